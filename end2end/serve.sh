#!/usr/bin/env bash
# Starts the release server for the browser tests on a fresh SQLite file,
# with a known admin and one `user` account. Plain: no broker (commands
# are recorded; opens end `failed: timeout`). With `--demo`: the embedded
# broker and three simulated locker banks that answer (E2E_DEMO_PORT).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${LOCKSTEP_BIN:-$root/target/release/lockstep}"
data="$(mktemp -d /tmp/lockstep-e2e.XXXXXX)"
unset DATABASE_URL
export LOCKSTEP_DATA_DIR="$data"
# The hub's Pusher app, the same for both servers (helpers.ts has them too).
export LOCKSTEP_PUSHER_APP_ID="e2e-app"
export LOCKSTEP_PUSHER_APP_KEY="e2e-key"
export LOCKSTEP_PUSHER_APP_SECRET="e2e-secret-0123456789abcdef"
if [ "${1:-}" = "--demo" ]; then
  export LOCKSTEP_ADDR="127.0.0.1:${E2E_DEMO_PORT:-3101}"
  export LOCKSTEP_MQTT=embedded
  # A known port and provisioning password: provision.spec.ts provisions
  # a locker of its own (MQTT.js, written from docs/mqtt.md).
  export MQTT_EMBEDDED_ADDR="127.0.0.1:${E2E_DEMO_MQTT_PORT:-3183}"
  export LOCKSTEP_PROVISIONING_PASSWORD="e2e-provisioning-password"
else
  export LOCKSTEP_ADDR="127.0.0.1:${E2E_PORT:-3100}"
  export LOCKSTEP_MQTT=off
fi
export LOCKSTEP_ADMIN_EMAIL="admin@e2e.test"
export LOCKSTEP_ADMIN_PASSWORD="admin-e2e-password"
export LOCKSTEP_OPEN_TIMEOUT_SECS=3
export LEPTOS_ENV=PROD
export LEPTOS_SITE_ROOT="$root/target/site"
"$bin" migrate
"$bin" user add --email user@e2e.test --role user --password user-e2e-password --name "Uma User"
# A second admin of the same tenant, and an admin of another tenant
# (records.spec.ts: two editors of one record, and one who sees nothing).
# The first admin is made here too, as the server's bootstrap would (it
# makes one only when there is no admin yet).
"$bin" user add --email admin@e2e.test --role admin --password admin-e2e-password --name "Administrator"
"$bin" user add --email admin2@e2e.test --role admin --password admin2-e2e-password --name "Bea Admin"
"$bin" user add --email other@e2e.test --role admin --tenant "Other" --password other-e2e-password --name "Olga Other"
exec "$bin" serve "$@"
