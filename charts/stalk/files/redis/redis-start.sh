#!/bin/sh
# Start redis-server as the master or as a replica of the current master (see lib.sh).
# Extra environment: CONF_DIR (writable), DATA_DIR, REDIS_BIND, APPENDONLY.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

: "${CONF_DIR:=/conf}"
: "${DATA_DIR:=/data}"
: "${REDIS_BIND:=* -::*}"
: "${APPENDONLY:=yes}"

master=$(current_master)
conf="$CONF_DIR/redis.conf"
umask 077
{
    echo "bind $REDIS_BIND"
    echo "port $REDIS_PORT"
    echo "dir $DATA_DIR"
    echo "protected-mode no"
    echo "appendonly $APPENDONLY"
    echo "replica-announce-ip $MY_HOST"
    echo "replica-read-only yes"
    if [ -n "$REDIS_PASSWORD" ]; then
        echo "requirepass \"$REDIS_PASSWORD\""
        echo "masterauth \"$REDIS_PASSWORD\""
    fi
    if [ "$master" != "$MY_HOST" ]; then
        echo "replicaof $master $REDIS_PORT"
    fi
} >"$conf"

if [ "$master" = "$MY_HOST" ]; then
    log "starting as master ($MY_HOST)"
else
    log "starting as replica of $master"
fi
exec redis-server "$conf"
