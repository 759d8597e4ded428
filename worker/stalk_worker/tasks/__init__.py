"""The built-in task modules; each is routed to its own queue (see :mod:`stalk_worker.routing`)."""
