#!/bin/sh
# preStop of the redis container: a master hands over before it stops. Deleting its pod
# (a rollout, a node drain) then promotes a replica at once, instead of leaving clients
# without a master until the Sentinels time out; and a pod recreated quickly under the
# same name cannot come back as the master with nothing having failed over.
#
# Writes are paused first (CLIENT PAUSE WRITE), so the replicas hold every acknowledged
# write when one is promoted; this Redis becomes a replica of the new master before the
# pause ends, so a write held by the pause is refused (READONLY) and the client retries it
# on the new master rather than landing here and being lost. A peer's Sentinel is asked,
# since this pod's own is stopping too. Gives up after HANDOVER_SECONDS.
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

: "${HANDOVER_SECONDS:=20}"

info=$(ask "$LOCAL_HOST" "$REDIS_PORT" INFO replication) || exit 0
case "$info" in *role:master*) ;; *) exit 0 ;; esac
replicas=$(printf '%s\n' "$info" | tr -d '\r' | sed -n 's/^connected_slaves://p')
if [ "${replicas:-0}" -eq 0 ]; then
    log "master with no replica: nothing to hand over to"
    exit 0
fi

ask "$LOCAL_HOST" "$REDIS_PORT" CLIENT PAUSE $((HANDOVER_SECONDS * 1000)) WRITE >/dev/null
asked=""
for node in $REDIS_NODES; do
    [ "$node" = "$MY_HOST" ] && continue
    if [ "$(ask "$node" "$SENTINEL_PORT" SENTINEL FAILOVER "$MASTER_NAME")" = "OK" ]; then
        asked=$node
        break
    fi
done
if [ -z "$asked" ]; then
    ask "$LOCAL_HOST" "$REDIS_PORT" CLIENT UNPAUSE >/dev/null
    log "no Sentinel would start a failover; stopping as master"
    exit 0
fi

log "writes paused; asked the Sentinel on $asked to fail over"
deadline=$(($(date +%s) + HANDOVER_SECONDS))
while [ "$(date +%s)" -lt "$deadline" ]; do
    master=$(ask "$asked" "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1)
    if [ -n "$master" ] && [ "$master" != "$MY_HOST" ]; then
        ask "$LOCAL_HOST" "$REDIS_PORT" REPLICAOF "$master" "$REDIS_PORT" >/dev/null
        ask "$LOCAL_HOST" "$REDIS_PORT" CLIENT UNPAUSE >/dev/null
        log "handed over to $master: now its replica"
        exit 0
    fi
    sleep 0.2
done
ask "$LOCAL_HOST" "$REDIS_PORT" CLIENT UNPAUSE >/dev/null
log "no new master after ${HANDOVER_SECONDS}s; stopping anyway"
