#!/usr/bin/env bash
# Builds and starts the demo: the simulated backends (demo/backends.yaml) and the gateway
# (demo/fanout.yaml), waits until both answer, then
#   - with a command: runs it, stops the demo, and exits with the command's status
#     (`scripts/with_demo.sh scripts/load.sh`: what CI uses to check things against the demo);
#   - without one: prints what to try and serves until Ctrl-C (`make run`).
# FANOUT_BUILD=release uses release binaries (default: debug).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${FANOUT_BUILD:-debug}
if [ "$profile" = release ]; then
  cargo build --release --locked --workspace --bins
else
  cargo build --locked --workspace --bins
fi
bin=./target/$profile
"$bin/fanout" check --config demo/fanout.yaml >/dev/null

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped" >&2
}
trap stop INT TERM EXIT

# With a command, the servers log to files so their lines do not mix with its output.
logs=target/demo
mkdir -p "$logs"
if [ $# -gt 0 ]; then exec 3>"$logs/mockend.log" 4>"$logs/fanout.log"; else exec 3>&1 4>&1; fi
"$bin/mockend" --config demo/backends.yaml >&3 2>&1 &
pids+=($!)
"$bin/fanout" serve --config demo/fanout.yaml >&4 2>&1 &
pids+=($!)

ready=
for _ in $(seq 1 100); do
  if curl -sf http://127.0.0.1:9901/readyz >/dev/null 2>&1 && curl -sf http://127.0.0.1:7101/bench/1 >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "the demo did not start (ports 8080, 9901, 7101-7107 busy? logs: $logs)" >&2; exit 1; }

if [ $# -gt 0 ]; then
  status=0
  "$@" || status=$?
  exit "$status"
fi

cat <<'MSG'

fanout demo is up. Try:
  curl -si http://127.0.0.1:8080/api/products/42
  curl -s  http://127.0.0.1:8080/api/products/42 | python3 -m json.tool
  curl -s  http://127.0.0.1:8080/api/carts/7 | python3 -m json.tool      # cart → items → sellers
  curl -si http://127.0.0.1:8080/api/products/..%2Fadmin     # 400: parameters never escape their segment
  curl -s  http://127.0.0.1:9901/readyz
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
