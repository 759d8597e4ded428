#!/bin/sh
# Kubernetes probe: probe.sh redis|sentinel ready|alive.
# Ready means answering PONG; alive also accepts a Redis still loading its data set
# or waiting for its master, so a long load is not killed in a loop.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

case "$1" in
    redis) port=$REDIS_PORT ;;
    sentinel) port=$SENTINEL_PORT ;;
    *) echo "usage: probe.sh redis|sentinel ready|alive" >&2; exit 2 ;;
esac
reply=$(ask "$LOCAL_HOST" "$port" PING) || exit 1
case "$2:$reply" in
    *:PONG) exit 0 ;;
    alive:LOADING* | alive:MASTERDOWN*) exit 0 ;;
    *) echo "$reply" >&2; exit 1 ;;
esac
