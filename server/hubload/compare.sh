#!/usr/bin/env bash
# Lockstep's realtime hub against sockudo under the same Pusher load
# (hubload). There are three scenarios. Each runs against both servers, one
# after the other, and every run starts its server fresh:
#   idle   10,000 connections over 100 channels, no publishes: RSS per connection
#   fixed  the same, 200 publishes/s (= 20,000 delivered msg/s) for 20 s: p99
#   ramp   the same at 400 … 1500 publishes/s, 15 s each: msg/s, p99, lost
# For each scenario it prints one table with both servers' figures and the
# ratio Lockstep/sockudo. It also prints the highest rate at which each
# server kept p99 under 100 ms and lost nothing.
#
#   server/hubload/compare.sh                   # the full run (~10 min)
#   HUBLOAD_QUICK=1 server/hubload/compare.sh   # a smoke run (500 conns, 5 s)
#
# Needs release builds of lockstep and hubload:
#   cargo build --release -p lockstep -p lockstep-hubload
# It also needs sockudo (`cargo install --locked sockudo`; without it only
# Lockstep runs), curl, and jq.
#
# Settings (environment):
#   LOCKSTEP_BIN   default ${CARGO_TARGET_DIR:-~/.cache/lockstep/target}/release/lockstep
#   HUBLOAD_BIN    default the same directory's hubload
#   SOCKUDO_BIN    default ~/.cargo/bin/sockudo
#   HUBLOAD_QUICK=1                  smaller defaults for everything below
#   HUBLOAD_SCENARIOS="idle fixed ramp"
#   HUBLOAD_SERVERS="lockstep sockudo"
#   HUBLOAD_CONNECTIONS=10000  HUBLOAD_CHANNELS=100  HUBLOAD_PAYLOAD_BYTES=100
#   HUBLOAD_IDLE_SECS=10
#   HUBLOAD_FIXED_RATE=200  HUBLOAD_FIXED_SECS=20  HUBLOAD_FIXED_BATCH=0
#   HUBLOAD_RAMP_RATES="400 600 750 900 1200 1500"  HUBLOAD_RAMP_SECS=15
#   HUBLOAD_RAMP_BATCH=1             /batch_events, 10 events a request
#   HUBLOAD_WARMUP_SECS=2  HUBLOAD_CONNECT_CONCURRENCY=200  HUBLOAD_PUBLISH_WORKERS=16
#   HUBLOAD_P99_MAX_MS=100           what "kept up" means, with nothing lost
#   HUBLOAD_SOCKUDO_METRICS=0        1: sockudo's Prometheus exporter on, on a free port
#   HUBLOAD_KEEP=0                   1: keep the work directory (logs, RESULT json)
#   HUBLOAD_PIN=0                    1: server on CPU 0, hubload on CPU 1 (taskset)
#
# Each server and hubload run as separate processes on this machine, so on
# a small machine they share the same cores. The figures compare the two
# servers with each other; they are not absolute capacities.

set -uo pipefail

die() {
    echo "compare.sh: $*" >&2
    exit 1
}

command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
command -v curl >/dev/null || die "curl is needed"

TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}
LOCKSTEP_BIN=${LOCKSTEP_BIN:-$TARGET/release/lockstep}
HUBLOAD_BIN=${HUBLOAD_BIN:-$TARGET/release/hubload}
SOCKUDO_BIN=${SOCKUDO_BIN:-$HOME/.cargo/bin/sockudo}

if [[ ${HUBLOAD_QUICK:-0} == 1 ]]; then
    d_conns=500 d_chans=10 d_idle=5 d_fixed_rate=50 d_fixed_secs=5
    d_ramp_rates="50 100 200" d_ramp_secs=5
else
    d_conns=10000 d_chans=100 d_idle=10 d_fixed_rate=200 d_fixed_secs=20
    d_ramp_rates="400 600 750 900 1200 1500" d_ramp_secs=15
fi
SCENARIOS=${HUBLOAD_SCENARIOS:-idle fixed ramp}
SERVERS=${HUBLOAD_SERVERS:-lockstep sockudo}
CONNS=${HUBLOAD_CONNECTIONS:-$d_conns}
CHANS=${HUBLOAD_CHANNELS:-$d_chans}
PAYLOAD=${HUBLOAD_PAYLOAD_BYTES:-100}
IDLE_SECS=${HUBLOAD_IDLE_SECS:-$d_idle}
FIXED_RATE=${HUBLOAD_FIXED_RATE:-$d_fixed_rate}
FIXED_SECS=${HUBLOAD_FIXED_SECS:-$d_fixed_secs}
FIXED_BATCH=${HUBLOAD_FIXED_BATCH:-0}
RAMP_RATES=${HUBLOAD_RAMP_RATES:-$d_ramp_rates}
RAMP_SECS=${HUBLOAD_RAMP_SECS:-$d_ramp_secs}
RAMP_BATCH=${HUBLOAD_RAMP_BATCH:-1}
WARMUP=${HUBLOAD_WARMUP_SECS:-2}
CONNECT_CONCURRENCY=${HUBLOAD_CONNECT_CONCURRENCY:-200}
PUBLISH_WORKERS=${HUBLOAD_PUBLISH_WORKERS:-16}
P99_MAX_MS=${HUBLOAD_P99_MAX_MS:-100}
SOCKUDO_METRICS=${HUBLOAD_SOCKUDO_METRICS:-0}
KEEP=${HUBLOAD_KEEP:-0}

[[ -x $LOCKSTEP_BIN ]] || die "no Lockstep binary at $LOCKSTEP_BIN (cargo build --release -p lockstep, or set LOCKSTEP_BIN)"
# HUBLOAD_PIN=1: the server on CPU 0, hubload on CPU 1 (taskset), so each
# server gets one whole core and the tool never takes from it.
if [[ ${HUBLOAD_PIN:-0} == 1 ]]; then
    SERVER_PIN=(taskset -c 0)
    TOOL_PIN=(taskset -c 1)
else
    SERVER_PIN=()
    TOOL_PIN=()
fi
[[ -x $HUBLOAD_BIN ]] || die "no hubload binary at $HUBLOAD_BIN (cargo build --release -p lockstep-hubload, or set HUBLOAD_BIN)"
if [[ " $SERVERS " == *" sockudo "* && ! -x $SOCKUDO_BIN ]]; then
    echo "compare.sh: sockudo is not installed at $SOCKUDO_BIN; running Lockstep alone." >&2
    echo "  Install it with:  cargo install --locked sockudo   (or set SOCKUDO_BIN)" >&2
    SERVERS=${SERVERS//sockudo/}
fi
[[ -n ${SERVERS// /} ]] || die "no server to run"

# As many open files as the hard limit allows (each process has its own).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < CONNS + 200)); then
    echo "compare.sh: warning: open-files limit $(ulimit -n) is below $CONNS connections + 200" >&2
fi

WORK=$(mktemp -d -t hubload.XXXXXX) || die "mktemp failed"
SERVER_PID=""
SERVER_PORT=""
SERVER_LOG=""

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -KILL "$SERVER_PID" 2>/dev/null
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

cleanup() {
    stop_server
    if [[ $KEEP == 1 ]]; then
        echo "compare.sh: logs and results kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

APP_ID=${HUBLOAD_APP_ID:-424242}
APP_KEY="hubload$(rand_hex 8)"
APP_SECRET=$(rand_hex 20)

# A port nothing listens on, below the kernel's ephemeral range (32768+),
# so hubload's own outgoing connections never take it.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_up URL: until URL answers anything over HTTP (30 s at most) while the
# server is alive; prints the status code.
wait_up() {
    local code
    for _ in $(seq 1 150); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "000"
            return 1
        fi
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" 2>/dev/null) || true
        if [[ -n $code && $code != 000 ]]; then
            echo "$code"
            return 0
        fi
        sleep 0.2
    done
    echo "000"
    return 1
}

start_lockstep() { # run-name
    local dir="$WORK/$1" port code
    mkdir -p "$dir/data"
    port=$(free_port) || die "no free port"
    # LOCKSTEP_LOG as asked; RUST_LOG is what the server's logging reads today.
    local vars=(
        PATH="$PATH" HOME="$HOME"
        LOCKSTEP_DATA_DIR="$dir/data"
        LOCKSTEP_ADDR="127.0.0.1:$port"
        LOCKSTEP_MQTT=off
        LOCKSTEP_PUSHER_APP_ID="$APP_ID"
        LOCKSTEP_PUSHER_APP_KEY="$APP_KEY"
        LOCKSTEP_PUSHER_APP_SECRET="$APP_SECRET"
        LOCKSTEP_HUB_MAX_CONNECTIONS=20000
        LOCKSTEP_HUB_RATE_LIMIT=0
        LOCKSTEP_MAX_CONNECTIONS=20000
        LOCKSTEP_ADMIN_PASSWORD="$(rand_hex 16)"
        LOCKSTEP_LOG=warn
        RUST_LOG=warn
    )
    if ! env -i "${vars[@]}" "$LOCKSTEP_BIN" migrate >"$dir/migrate.log" 2>&1; then
        echo "  lockstep migrate failed:" >&2
        tail -n 20 "$dir/migrate.log" >&2
        return 1
    fi
    SERVER_LOG="$dir/server.log"
    "${SERVER_PIN[@]}" env -i "${vars[@]}" "$LOCKSTEP_BIN" serve >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SERVER_PORT=$port
    if ! code=$(wait_up "http://127.0.0.1:$port/healthz") || [[ $code != 200 ]]; then
        echo "  lockstep did not come up (/healthz: $code):" >&2
        tail -n 20 "$SERVER_LOG" >&2
        stop_server
        return 1
    fi
}

# sockudo's configuration, written for each run. The keys are those of
# sockudo-core's ServerOptions (crates/sockudo-core/src/options/), checked
# against its config/config.json and loadtest/churn/config.json. The app is
# given both in the grouped `policy` shape (sockudo 4+) and in the older flat
# shape, which sockudo still reads when `policy` is absent.
write_sockudo_config() { # file port metrics-port
    local metrics=false
    [[ $SOCKUDO_METRICS == 1 ]] && metrics=true
    cat >"$1" <<EOF
{
  "debug": false,
  "host": "127.0.0.1",
  "port": $2,
  "shutdown_grace_period": 1,
  "max_connections": 0,
  "adapter": { "driver": "local" },
  "app_manager": {
    "driver": "memory",
    "array": {
      "apps": [
        {
          "id": "$APP_ID",
          "key": "$APP_KEY",
          "secret": "$APP_SECRET",
          "enabled": true,
          "max_connections": 100000,
          "enable_client_messages": false,
          "max_client_events_per_second": 10000,
          "max_event_batch_size": 10,
          "max_event_payload_in_kb": 100,
          "max_event_channels_at_once": 100,
          "max_event_name_length": 200,
          "max_channel_name_length": 200,
          "allowed_origins": ["*"],
          "policy": {
            "limits": {
              "max_connections": 100000,
              "max_client_events_per_second": 10000,
              "max_event_batch_size": 10,
              "max_event_payload_in_kb": 100,
              "max_event_channels_at_once": 100,
              "max_event_name_length": 200,
              "max_channel_name_length": 200
            },
            "features": { "enable_client_messages": false },
            "channels": { "allowed_origins": ["*"] }
          }
        }
      ]
    }
  },
  "cache": { "driver": "memory" },
  "queue": { "driver": "memory" },
  "rate_limiter": { "enabled": false, "driver": "memory" },
  "metrics": {
    "enabled": $metrics,
    "driver": "prometheus",
    "host": "127.0.0.1",
    "port": $3
  },
  "delta_compression": { "enabled": false },
  "tag_filtering": { "enabled": false },
  "connection_recovery": { "enabled": false },
  "idempotency": { "enabled": false },
  "logging": { "colors_enabled": false, "include_target": true }
}
EOF
}

start_sockudo() { # run-name
    local dir="$WORK/$1" port metrics_port code
    mkdir -p "$dir"
    port=$(free_port) || die "no free port"
    metrics_port=$(free_port) || die "no free port"
    write_sockudo_config "$dir/config.json" "$port" "$metrics_port"
    SERVER_LOG="$dir/server.log"
    # From an empty directory (sockudo first reads ./config/config.json),
    # with only our file and no inherited settings (PORT, HOST, REDIS_URL,
    # SOCKUDO_DEFAULT_APP_* … would override it).
    (cd "$dir" && exec "${SERVER_PIN[@]}" env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn \
        "$SOCKUDO_BIN" --config "$dir/config.json") >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SERVER_PORT=$port
    if ! code=$(wait_up "http://127.0.0.1:$port/up"); then
        echo "  sockudo did not come up:" >&2
        tail -n 20 "$SERVER_LOG" >&2
        stop_server
        return 1
    fi
    # An unreadable file is logged and sockudo goes on with its defaults
    # (rate limiter on, Redis queue); that would not be a fair run.
    if grep -qiE "configuration load failed|validation failed" "$SERVER_LOG"; then
        echo "  sockudo rejected its configuration:" >&2
        tail -n 20 "$SERVER_LOG" >&2
        stop_server
        return 1
    fi
    if [[ $code != 200 ]]; then
        echo "  note: sockudo /up answered $code" >&2
    fi
}

start_server() { # server run-name
    case $1 in
    lockstep) start_lockstep "$2" ;;
    sockudo) start_sockudo "$2" ;;
    *) die "unknown server $1" ;;
    esac
}

# run_load server run-name rate secs batch: one hubload run against a fresh
# server; its RESULT json goes to $WORK/<run-name>.json ("{}" if none).
run_load() {
    local server=$1 name=$2 rate=$3 secs=$4 batch=$5
    local out="$WORK/$name.out" json="$WORK/$name.json"
    echo "{}" >"$json"
    echo
    echo "--- $name: $server, $CONNS connections / $CHANS channels, rate $rate/s, ${secs} s$([[ $batch == 1 ]] && echo ', batched')"
    if ! start_server "$server" "$name"; then
        echo "  (skipped: the server did not start)"
        return 1
    fi
    local args=(
        --host 127.0.0.1 --port "$SERVER_PORT"
        --app-id "$APP_ID" --key "$APP_KEY" --secret "$APP_SECRET"
        --connections "$CONNS" --channels "$CHANS"
        --rate "$rate" --payload-bytes "$PAYLOAD"
        --duration-secs "$secs" --warmup-secs "$WARMUP"
        --server-pid "$SERVER_PID"
        --connect-concurrency "$CONNECT_CONCURRENCY"
        --publish-workers "$PUBLISH_WORKERS"
        --label "$name"
    )
    [[ $batch == 1 ]] && args+=(--batch)
    "${TOOL_PIN[@]}" "$HUBLOAD_BIN" "${args[@]}" 2>&1 | tee "$out" | grep -v '^RESULT ' | sed 's/^/    /'
    local line
    line=$(grep '^RESULT ' "$out" | tail -n 1)
    if [[ -n $line ]]; then
        echo "${line#RESULT }" >"$json"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "  the server exited during the run; its log ends:"
        tail -n 20 "$SERVER_LOG" | sed 's/^/    /'
    fi
    stop_server
    sleep 1
}

# val file key: a number from a RESULT json, or "-".
val() {
    local v
    v=$(jq -r --arg k "$2" '.[$k] | select(type == "number")' "$1" 2>/dev/null) || true
    if [[ -n $v ]]; then echo "$v"; else echo "-"; fi
}

fmt() { # value decimals
    awk -v v="$1" -v d="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf("%." d "f\n", v) }'
}

# msgs rate: deliveries per second that many publishes per second make.
msgs() {
    awk -v r="$1" -v c="$CONNS" -v h="$CHANS" 'BEGIN { printf("%.0f\n", r * c / h) }'
}

ratio() { # a b: a/b
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf("%.2f\n", a / b) }'
}

# kept_up file: p99 under the bound, nothing lost or failed, every
# connection subscribed, every due publish sent.
kept_up() {
    jq -e --argjson p "$P99_MAX_MS" '
        (.latency_p99_ms != null) and (.latency_p99_ms < $p)
        and (.lost == 0) and (.publishes_failed == 0)
        and (.subscribed == .connections)
        and (.publishes_attempted == .publishes_due)' "$1" >/dev/null 2>&1
}

header() {
    echo
    echo "=== $1"
    printf "  %-34s %14s %14s %10s\n" "" lockstep sockudo "L/S"
}

row() { # title key decimals lockstep-file sockudo-file
    local a b
    a=$(val "$4" "$2")
    b=$(val "$5" "$2")
    printf "  %-34s %14s %14s %10s\n" "$1" "$(fmt "$a" "$3")" "$(fmt "$b" "$3")" "$(ratio "$a" "$b")"
}

has() { [[ " $SERVERS " == *" $1 "* ]]; }

table_common() { # lockstep-file sockudo-file
    row "connected" connected 0 "$1" "$2"
    row "subscribed" subscribed 0 "$1" "$2"
    row "connect rate (conn/s)" connect_rate 0 "$1" "$2"
    row "connect p99 (ms)" connect_p99_ms 2 "$1" "$2"
    row "subscribing took (s)" subscribe_secs 2 "$1" "$2"
}

table_delivery() { # lockstep-file sockudo-file
    row "publishes ok" publishes_ok 0 "$1" "$2"
    row "publishes failed" publishes_failed 0 "$1" "$2"
    row "expected deliveries" expected 0 "$1" "$2"
    row "delivered" delivered 0 "$1" "$2"
    row "lost" lost 0 "$1" "$2"
    row "delivered msg/s" delivered_per_sec 0 "$1" "$2"
    row "latency p50 (ms)" latency_p50_ms 2 "$1" "$2"
    row "latency p99 (ms)" latency_p99_ms 2 "$1" "$2"
    row "latency max (ms)" latency_max_ms 2 "$1" "$2"
    row "HTTP publish p99 (ms)" http_p99_ms 2 "$1" "$2"
    row "server RSS at the end (KiB)" rss_end_kib 0 "$1" "$2"
}

verdict() { # title file...
    local title=$1 server file
    shift
    for server in lockstep sockudo; do
        file=$1
        shift
        has "$server" || continue
        if kept_up "$file"; then
            echo "  $server: kept up (p99 < $P99_MAX_MS ms, nothing lost) $title"
        else
            echo "  $server: did NOT keep up $title"
        fi
    done
}

scenario_idle() {
    local s
    for s in lockstep sockudo; do
        has "$s" && run_load "$s" "idle-$s" 0 "$IDLE_SECS" 0
    done
    local l="$WORK/idle-lockstep.json" k="$WORK/idle-sockudo.json"
    header "idle: $CONNS connections over $CHANS channels, no publishes, ${IDLE_SECS} s"
    table_common "$l" "$k"
    row "server RSS before (KiB)" rss_before_kib 0 "$l" "$k"
    row "server RSS idle (KiB)" rss_idle_kib 0 "$l" "$k"
    row "server RSS at the end (KiB)" rss_end_kib 0 "$l" "$k"
    row "RSS per connection (KiB)" rss_per_conn_kib 2 "$l" "$k"
    SUMMARY+=("idle: RSS per connection (KiB): lockstep $(fmt "$(val "$l" rss_per_conn_kib)" 2), sockudo $(fmt "$(val "$k" rss_per_conn_kib)" 2), L/S $(ratio "$(val "$l" rss_per_conn_kib)" "$(val "$k" rss_per_conn_kib)")")
}

scenario_fixed() {
    local s
    for s in lockstep sockudo; do
        has "$s" && run_load "$s" "fixed-$s" "$FIXED_RATE" "$FIXED_SECS" "$FIXED_BATCH"
    done
    local l="$WORK/fixed-lockstep.json" k="$WORK/fixed-sockudo.json"
    header "fixed: $CONNS connections / $CHANS channels, $FIXED_RATE publishes/s (≈ $(msgs "$FIXED_RATE") msg/s), ${FIXED_SECS} s"
    table_common "$l" "$k"
    table_delivery "$l" "$k"
    verdict "at $FIXED_RATE publishes/s" "$l" "$k"
    SUMMARY+=("fixed $FIXED_RATE/s: p99 (ms): lockstep $(fmt "$(val "$l" latency_p99_ms)" 2), sockudo $(fmt "$(val "$k" latency_p99_ms)" 2), L/S $(ratio "$(val "$l" latency_p99_ms)" "$(val "$k" latency_p99_ms)")")
}

scenario_ramp() {
    local rate s
    # Interleaved (each rate on both servers before the next rate), so
    # drift on the machine hits both alike.
    for rate in $RAMP_RATES; do
        for s in lockstep sockudo; do
            has "$s" && run_load "$s" "ramp-$rate-$s" "$rate" "$RAMP_SECS" "$RAMP_BATCH"
        done
    done
    echo
    echo "=== ramp: $CONNS connections / $CHANS channels, ${RAMP_SECS} s a step$([[ $RAMP_BATCH == 1 ]] && echo ', batched publishes')"
    printf "  %8s %9s | %10s %9s %8s | %10s %9s %8s | %8s %8s\n" \
        "pub/s" "≈ msg/s" "L msg/s" "L p99 ms" "L lost" "S msg/s" "S p99 ms" "S lost" "msg/s L/S" "p99 L/S"
    local best_l="-" best_s="-" l k lr lp ll sr sp sl
    for rate in $RAMP_RATES; do
        l="$WORK/ramp-$rate-lockstep.json"
        k="$WORK/ramp-$rate-sockudo.json"
        lr=$(val "$l" delivered_per_sec) lp=$(val "$l" latency_p99_ms) ll=$(val "$l" lost)
        sr=$(val "$k" delivered_per_sec) sp=$(val "$k" latency_p99_ms) sl=$(val "$k" lost)
        printf "  %8s %9s | %10s %9s %8s | %10s %9s %8s | %8s %8s\n" \
            "$rate" "$(msgs "$rate")" \
            "$(fmt "$lr" 0)" "$(fmt "$lp" 2)" "$(fmt "$ll" 0)" \
            "$(fmt "$sr" 0)" "$(fmt "$sp" 2)" "$(fmt "$sl" 0)" \
            "$(ratio "$lr" "$sr")" "$(ratio "$lp" "$sp")"
        if has lockstep && kept_up "$l"; then best_l=$rate; fi
        if has sockudo && kept_up "$k"; then best_s=$rate; fi
    done
    echo
    echo "  highest rate kept up (p99 < $P99_MAX_MS ms, nothing lost, all publishes sent):"
    has lockstep && echo "    lockstep: $best_l publishes/s$([[ $best_l != - ]] && echo " (≈ $(msgs "$best_l") msg/s)")"
    has sockudo && echo "    sockudo:  $best_s publishes/s$([[ $best_s != - ]] && echo " (≈ $(msgs "$best_s") msg/s)")"
    SUMMARY+=("ramp: highest rate kept up: lockstep $best_l/s, sockudo $best_s/s")
}

echo "compare.sh: $(nproc) cores, open files $(ulimit -n), work dir $WORK"
echo "  lockstep: $LOCKSTEP_BIN"
echo "  hubload:  $HUBLOAD_BIN"
has sockudo && echo "  sockudo:  $SOCKUDO_BIN ($("$SOCKUDO_BIN" --version 2>/dev/null | head -n 1))"
echo "  scenarios: $SCENARIOS; servers: $SERVERS"

SUMMARY=()
for scenario in $SCENARIOS; do
    case $scenario in
    idle) scenario_idle ;;
    fixed) scenario_fixed ;;
    ramp) scenario_ramp ;;
    *) echo "compare.sh: unknown scenario $scenario (idle, fixed, ramp)" >&2 ;;
    esac
done

echo
echo "=== summary (L/S = Lockstep / sockudo)"
for line in "${SUMMARY[@]}"; do
    echo "  $line"
done
