#!/usr/bin/env bash
# Builds and starts the demo: the simulated backends (demo/backends.yaml) and the gateway
# (demo/fanout.yaml). Ctrl-C (or SIGTERM) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --workspace --bins
./target/debug/fanout check --config demo/fanout.yaml >/dev/null

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped"
}
trap stop INT TERM EXIT

./target/debug/mockend --config demo/backends.yaml &
pids+=($!)
./target/debug/fanout serve --config demo/fanout.yaml &
pids+=($!)

for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:9901/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

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
