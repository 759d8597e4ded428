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
# printf, not echo: dash's echo would expand backslashes in a password.
{
    printf '%s\n' "bind $SENTINEL_BIND"
    listen_config "$SENTINEL_PORT"
    printf '%s\n' "dir $CONF_DIR"
    printf '%s\n' "protected-mode no"
    printf '%s\n' "sentinel resolve-hostnames yes"
    printf '%s\n' "sentinel announce-hostnames yes"
    printf '%s\n' "sentinel announce-ip $MY_HOST"
    printf '%s\n' "sentinel monitor $MASTER_NAME $master $REDIS_PORT $QUORUM"
    printf '%s\n' "sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS"
    printf '%s\n' "sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS"
    printf '%s\n' "sentinel parallel-syncs $MASTER_NAME 1"
    if [ -n "$REDIS_PASSWORD" ]; then
        # Clients and the other Sentinels authenticate with the same password.
        printf '%s\n' "requirepass $(config_quoted "$REDIS_PASSWORD")"
        printf '%s\n' "sentinel auth-pass $MASTER_NAME $(config_quoted "$REDIS_PASSWORD")"
    fi
} >"$conf"

log "monitoring $master as $MASTER_NAME"
exec redis-sentinel "$conf"
