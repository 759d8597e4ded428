"""What a TaskQueue tells its users: status and conditions, Events, Prometheus metrics."""
