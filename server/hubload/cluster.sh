#!/usr/bin/env bash
# The realtime hub through HAProxy on one node against three (issue 16):
# the same hubload run (N subscribers over C public channels, signed HTTP
# publishes at a rate) against a cluster of 1, then of 3, `lockstep serve`
# nodes over PostgreSQL and NATS, each behind HAProxy from deploy/haproxy.
# HAProxy spreads both the WebSockets (leastconn) and the publishes; a
# publish reaches its node's subscribers directly and the others' through
# NATS. Prints delivered msg/s, p50/p99 and loss for each, and the ratio
# three/one.
#
#   server/hubload/cluster.sh                  # 3,000 conns, 30 chans, 300 pub/s, 15 s
#   HUBLOAD_QUICK=1 server/hubload/cluster.sh  # a smoke run
#
# Needs release builds (cargo build --release -p lockstep -p lockstep-hubload),
# PostgreSQL on 127.0.0.1:5432 (trust), nats-server, haproxy, jq.
# Settings: HUBLOAD_CONNECTIONS, HUBLOAD_CHANNELS, HUBLOAD_RATE,
# HUBLOAD_SECS, HUBLOAD_NODES ("1 3"), LOCKSTEP_BIN, HUBLOAD_BIN.
#
# Everything shares this machine's cores: on a 2-core box three nodes,
# HAProxy, PostgreSQL, NATS and the load tool compete, so the ratio says
# what the cluster costs here, not what three machines would carry.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}
LOCKSTEP_BIN=${LOCKSTEP_BIN:-$TARGET/release/lockstep}
HUBLOAD_BIN=${HUBLOAD_BIN:-$TARGET/release/hubload}
PG=${HUBLOAD_PG:-postgres://postgres@127.0.0.1:5432}
if [[ ${HUBLOAD_QUICK:-0} == 1 ]]; then
    d_conns=300 d_chans=10 d_rate=50 d_secs=5
else
    d_conns=3000 d_chans=30 d_rate=300 d_secs=15
fi
CONNS=${HUBLOAD_CONNECTIONS:-$d_conns}
CHANS=${HUBLOAD_CHANNELS:-$d_chans}
RATE=${HUBLOAD_RATE:-$d_rate}
SECS=${HUBLOAD_SECS:-$d_secs}
NODE_COUNTS=${HUBLOAD_NODES:-1 3}
for tool in jq haproxy nats-server psql "$LOCKSTEP_BIN" "$HUBLOAD_BIN"; do
    command -v "$tool" >/dev/null || [[ -x $tool ]] || { echo "cluster.sh: $tool is needed" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/lockstep-hubload-cluster.XXXXXX)
pids=()
stop_all() {
    for p in "${pids[@]}"; do
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    pids=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() {
    for _ in $(seq 1 600); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1") == 200 ]] && return 0
        sleep 0.1
    done
    echo "cluster.sh: $1 never answered 200" >&2
    exit 1
}

# run N: starts a cluster of N nodes, runs hubload through HAProxy, stops it.
run() {
    local n=$1 db nats_port lb_port i port servers=()
    db="lockstep_hubload_$$_$n"
    psql "$PG/postgres" -qc "CREATE DATABASE $db" || exit 1
    nats_port=$(free_port)
    nats-server -a 127.0.0.1 -p "$nats_port" >/dev/null 2>&1 &
    pids+=($!)
    for i in $(seq 1 "$n"); do
        port=$(free_port)
        servers+=("127.0.0.1:$port")
        DATABASE_URL="$PG/$db" NATS_URL="nats://127.0.0.1:$nats_port" LOCKSTEP_MQTT=off \
            LOCKSTEP_ADDR="127.0.0.1:$port" MQTT_CLIENT_ID="hubload-node-$i" \
            LOCKSTEP_DATA_DIR="$WORK/data-$n-$i" LOCKSTEP_ADMIN_PASSWORD=hubload-admin-pw \
            LOCKSTEP_PUSHER_APP_ID=hubload LOCKSTEP_PUSHER_APP_KEY=hubload-key \
            LOCKSTEP_PUSHER_APP_SECRET=hubload-secret LOCKSTEP_HUB_RATE_LIMIT=0 \
            LOCKSTEP_HUB_MAX_CONNECTIONS=20000 LOCKSTEP_MAX_CONNECTIONS=20000 RUST_LOG=warn \
            "$LOCKSTEP_BIN" serve >"$WORK/node-$n-$i.log" 2>&1 &
        pids+=($!)
        wait_ok "http://127.0.0.1:$port/readyz"
    done
    lb_port=$(free_port)
    bash "$root/deploy/haproxy/render" "$WORK/haproxy-$n.cfg" "127.0.0.1:$lb_port" "${servers[@]}" || exit 1
    haproxy -db -f "$WORK/haproxy-$n.cfg" >/dev/null 2>&1 &
    pids+=($!)
    wait_ok "http://127.0.0.1:$lb_port/readyz"
    "$HUBLOAD_BIN" --port "$lb_port" --app-id hubload --key hubload-key --secret hubload-secret \
        --connections "$CONNS" --channels "$CHANS" --rate "$RATE" --duration-secs "$SECS" \
        --label "nodes=$n" >"$WORK/hubload-$n.out" 2>&1
    grep '^RESULT ' "$WORK/hubload-$n.out" | tail -n 1 | sed 's/^RESULT //' >"$WORK/result-$n.json"
    stop_all
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

echo "hubload through HAProxy: $CONNS connections over $CHANS channels, $RATE publishes/s for $SECS s"
for n in $NODE_COUNTS; do
    echo "== $n node(s)"
    run "$n"
    jq -r '"   delivered \(.delivered)/\(.expected) (lost \(.lost)), \(.delivered_per_sec | floor) msg/s, p50 \(.latency_p50_ms) ms, p99 \(.latency_p99_ms) ms"' "$WORK/result-$n.json"
done
first=${NODE_COUNTS%% *}
last=${NODE_COUNTS##* }
if [[ $first != "$last" ]]; then
    jq -rn --slurpfile a "$WORK/result-$first.json" --slurpfile b "$WORK/result-$last.json" \
        '"ratio \($ARGS.named.l)/\($ARGS.named.f) nodes: msg/s \(($b[0].delivered_per_sec / $a[0].delivered_per_sec * 100 | floor) / 100)x, p99 \(($b[0].latency_p99_ms / $a[0].latency_p99_ms * 100 | floor) / 100)x"' \
        --arg f "$first" --arg l "$last"
fi
