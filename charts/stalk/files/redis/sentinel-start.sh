#!/bin/sh
# Start redis-sentinel monitoring the current master (see lib.sh), by name.
# Extra environment: CONF_DIR (writable), SENTINEL_BIND, QUORUM, DOWN_AFTER_MS,
# FAILOVER_TIMEOUT_MS.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

: "${CONF_DIR:=/conf}"
: "${SENTINEL_BIND:=* -::*}"
: "${QUORUM:=2}"
: "${DOWN_AFTER_MS:=5000}"
: "${FAILOVER_TIMEOUT_MS:=10000}"

master=$(current_master)
wait_for_name "$master"
conf="$CONF_DIR/sentinel.conf"
umask 077
{
    echo "bind $SENTINEL_BIND"
    echo "port $SENTINEL_PORT"
    echo "dir $CONF_DIR"
    echo "protected-mode no"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    echo "sentinel announce-ip $MY_HOST"
    echo "sentinel monitor $MASTER_NAME $master $REDIS_PORT $QUORUM"
    echo "sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS"
    echo "sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS"
    echo "sentinel parallel-syncs $MASTER_NAME 1"
    if [ -n "$REDIS_PASSWORD" ]; then
        # Clients and the other Sentinels authenticate with the same password.
        echo "requirepass \"$REDIS_PASSWORD\""
        echo "sentinel auth-pass $MASTER_NAME \"$REDIS_PASSWORD\""
    fi
} >"$conf"

log "monitoring $master as $MASTER_NAME"
exec redis-sentinel "$conf"
