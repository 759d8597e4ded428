# shellcheck shell=sh
# Shared by redis-start.sh and sentinel-start.sh: how a node finds the current master.
#
# Both containers of a pod ask the same question in the same order, so every node reaches
# the same answer even when all of them start at once:
#   1. the Sentinels that are up: the master of the highest config epoch (Sentinel's own
#      rule for settling disagreements);
#   2. otherwise a Redis that is up and says it is a master with replicas, then any
#      master (Sentinels all restarting while Redis kept running; this pod's own Redis
#      counts, which only a Sentinel can see running);
#   3. otherwise the first node, and only the first: a fresh or fully restarted group
#      never elects two masters (bitnami/charts#8878, #17047).
# Names, not IPs, are announced and monitored, so a pod that comes back with a new IP is
# still found (bitnami/charts#3700), and no config survives a restart to point at a stale
# address (bitnami/charts#7283).
#
# Environment: REDIS_NODES (every node's hostname, first one first), MY_HOST, REDIS_PORT,
# SENTINEL_PORT, MASTER_NAME, REDIS_PASSWORD (empty: no auth), LOCAL_HOST (where this
# pod's own containers answer; localhost), TLS_DIR (tls.crt, tls.key and ca.crt; empty:
# no TLS).

set -eu

: "${REDIS_PORT:=6379}"
: "${SENTINEL_PORT:=26379}"
: "${MASTER_NAME:=mymaster}"
: "${REDIS_PASSWORD:=}"
: "${LOCAL_HOST:=localhost}"
: "${TLS_DIR:=}"

log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) [$(basename "$0")] $*" >&2
}

# redis-cli against host:port with a short timeout; the password travels in the
# environment, never on the command line.
ask() {
    ask_host=$1
    ask_port=$2
    shift 2
    set -- -h "$ask_host" -p "$ask_port" "$@"
    if [ -n "$TLS_DIR" ]; then
        set -- --tls --cacert "$TLS_DIR/ca.crt" "$@"
    fi
    if [ -n "$REDIS_PASSWORD" ]; then
        REDISCLI_AUTH=$REDIS_PASSWORD timeout 3 redis-cli --no-auth-warning "$@" 2>/dev/null
    else
        timeout 3 redis-cli "$@" 2>/dev/null
    fi
}

# The config lines that open port $1: plain, or TLS only (clients need no certificate
# of their own; replication and the Sentinels' links are TLS too).
listen_config() {
    if [ -z "$TLS_DIR" ]; then
        printf '%s\n' "port $1"
        return 0
    fi
    printf '%s\n' "port 0" "tls-port $1" \
        "tls-cert-file $TLS_DIR/tls.crt" "tls-key-file $TLS_DIR/tls.key" \
        "tls-ca-cert-file $TLS_DIR/ca.crt" "tls-auth-clients no" "tls-replication yes"
}

# A value as a double-quoted Redis config string: backslashes and quotes escaped, so a
# password from your own Secret may hold any printable character.
config_quoted() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# The value after a key in redis-cli's one-item-per-line reply to SENTINEL MASTER.
field() {
    awk -v key="$1" 'found { print; exit } $0 == key { found = 1 }'
}

master_from_sentinels() {
    best=""
    best_epoch=-1
    for node in $REDIS_NODES; do
        reply=$(ask "$node" "$SENTINEL_PORT" SENTINEL MASTER "$MASTER_NAME") || continue
        host=$(printf '%s\n' "$reply" | field ip)
        epoch=$(printf '%s\n' "$reply" | field config-epoch)
        case "$epoch" in '' | *[!0-9]*) continue ;; esac
        if [ -n "$host" ] && [ "$epoch" -gt "$best_epoch" ]; then
            best=$host
            best_epoch=$epoch
        fi
    done
    [ -n "$best" ] && echo "$best"
}

master_from_peers() {
    lonely=""
    for node in $REDIS_NODES; do
        info=$(ask "$node" "$REDIS_PORT" INFO replication) || continue
        case "$info" in *role:master*) ;; *) continue ;; esac
        replicas=$(printf '%s\n' "$info" | tr -d '\r' | sed -n 's/^connected_slaves://p')
        if [ "${replicas:-0}" -gt 0 ]; then
            echo "$node"
            return 0
        fi
        [ -z "$lonely" ] && lonely=$node
    done
    [ -n "$lonely" ] && echo "$lonely"
}

first_node() {
    for node in $REDIS_NODES; do
        echo "$node"
        return 0
    done
}

current_master() {
    master_from_sentinels || master_from_peers || first_node
}

# Wait (up to a minute) until a hostname resolves: Sentinel refuses to start on one that
# does not, and a peer's DNS record appears only once its pod has an IP.
wait_for_name() {
    case "$1" in *[!0-9.]*) ;; *) return 0 ;; esac
    tries=0
    until getent hosts "$1" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            log "$1 does not resolve; starting anyway"
            return 0
        fi
        sleep 1
    done
}
