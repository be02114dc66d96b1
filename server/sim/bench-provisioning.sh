#!/usr/bin/env bash
# Provisioning benchmark: N simulated lockers (default 10,000) provision
# themselves against Mosquitto set up by deploy/mosquitto/init, with the
# server on SQLite (or DATABASE_URL). Prints the time to provision all and
# the CPU and memory of server, broker and simulator; the baseline it
# names is the same N clients only connecting to the provisioning listener
# and subscribing to their reply topics (the broker's share, no server).
#
#   cargo build --release -p lockstep -p locker-sim
#   bash server/sim/bench-provisioning.sh [N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
n="${1:-10000}"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d /tmp/lockstep-bench.XXXXXX)"
chmod 755 "$work"  # Mosquitto drops to user mosquitto and must reach its directory
ulimit -n 20000
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport=$(port); pport=$(port); hport=$(port)
export LOCKSTEP_BROKER_PASSWORD=bench-bridge PROVISIONING_PASSWORD=bench-prov
bash "$root/deploy/mosquitto/init" "$work/broker" --dynsec-port "$dport" --provisioning-port "$pport" --bind 127.0.0.1 >/dev/null
# More connections than the default backlog; quiet logs.
sed -i 's/^log_type information$//' "$work/broker/mosquitto.conf"
mosquitto -c "$work/broker/mosquitto.conf" 2>"$work/mosquitto.log" &
mq=$!
pids=("$mq")
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$pport) 2>/dev/null && break; sleep 0.05; done

usage() { # pid -> "cpu_seconds rss_mb"
  awk '{print ($14+$15)/100, $24*4096/1000000}' "/proc/$1/stat" 2>/dev/null || echo "0 0"
}

echo "== baseline: $n clients connect + subscribe on the provisioning listener"
"$bin/locker-sim" --lockers "$n" --baseline-connect-only --concurrency 200 \
  --provisioning-url "mqtt://provisioning:bench-prov@127.0.0.1:$pport" | tail -1 | tee "$work/baseline.txt"

export LOCKSTEP_DATA_DIR="$work/data" LOCKSTEP_ADDR="127.0.0.1:$hport" LOCKSTEP_ADMIN_EMAIL=admin@bench.test
export LOCKSTEP_ADMIN_PASSWORD=bench-admin-password MQTT_URL="mqtt://lockstep:bench-bridge@127.0.0.1:$dport"
export LOCKSTEP_OFFLINE_AFTER_SECS=600 RUST_LOG=warn
"$bin/lockstep" migrate >/dev/null
"$bin/lockstep" serve >"$work/server.log" 2>&1 &
srv=$!
pids+=("$srv")
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hport/readyz" >/dev/null && break; sleep 0.05; done
key=$("$bin/lockstep" provisioning-key create --email admin@bench.test | tail -1)
read -r s_cpu0 _ < <(usage "$srv"); read -r m_cpu0 _ < <(usage "$mq")

echo "== $n lockers provision themselves (server on ${DATABASE_URL:-SQLite})"
"$bin/locker-sim" --lockers "$n" --compartments 4 --provisioning-key "$key" --concurrency 64 \
  --heartbeat-secs 30 --exit-when-online --serial-prefix "BENCH-$$-" \
  --provisioning-url "mqtt://provisioning:bench-prov@127.0.0.1:$pport" \
  --broker-url "mqtt://127.0.0.1:$dport" | tee "$work/run.txt" | grep -E "all done|failed" || true
read -r s_cpu1 s_rss < <(usage "$srv"); read -r m_cpu1 m_rss < <(usage "$mq")
events=$(python3 - "$work/data/lockstep.db" <<'PY'
import sqlite3, sys
try:
    c = sqlite3.connect(sys.argv[1])
    print(c.execute("select count(*) from locker_banks where state='provisioned' and online=1").fetchone()[0])
except Exception as e:
    print("n/a")
PY
)
base=$(sed -n 's/.* in \([0-9.]*\) s.*/\1/p' "$work/baseline.txt")
run=$(sed -n 's/^all done: .* in \([0-9.]*\) s.*/\1/p' "$work/run.txt")
echo "== results"
echo "banks provisioned and online in the read model: $events of $n"
echo "provisioning all: ${run} s; baseline (connect + subscribe only): ${base} s; ratio $(python3 -c "print(round(${run:-0}/max(${base:-1},0.001),1))")x"
echo "server:    cpu $(python3 -c "print(round($s_cpu1-$s_cpu0,1))") s, rss ${s_rss} MB"
echo "mosquitto: cpu $(python3 -c "print(round($m_cpu1-$m_cpu0,1))") s, rss ${m_rss} MB"
grep "all done" "$work/run.txt" | sed 's/^/simulator: /'
