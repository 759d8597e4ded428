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
# printf, not echo: dash's echo would expand backslashes in a password.
{
    printf '%s\n' "bind $REDIS_BIND"
    listen_config "$REDIS_PORT"
    printf '%s\n' "dir $DATA_DIR"
    printf '%s\n' "protected-mode no"
    printf '%s\n' "appendonly $APPENDONLY"
    printf '%s\n' "replica-announce-ip $MY_HOST"
    printf '%s\n' "replica-read-only yes"
    if [ -n "$REDIS_PASSWORD" ]; then
        printf '%s\n' "requirepass $(config_quoted "$REDIS_PASSWORD")"
        printf '%s\n' "masterauth $(config_quoted "$REDIS_PASSWORD")"
    fi
    if [ "$master" != "$MY_HOST" ]; then
        printf '%s\n' "replicaof $master $REDIS_PORT"
    fi
} >"$conf"

if [ "$master" = "$MY_HOST" ]; then
    log "starting as master ($MY_HOST)"
else
    log "starting as replica of $master"
fi
exec redis-server "$conf"
