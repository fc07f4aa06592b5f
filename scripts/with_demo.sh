#!/usr/bin/env bash
# Builds and starts the demo: the simulated backends (demo/backends.yaml) and the gateway
# (demo/fanout.yaml), waits until both answer, then
#   - with a command: runs it, stops the demo, and exits with the command's status
#     (`scripts/with_demo.sh scripts/load.sh`: what CI uses to check things against the demo).
#     The demo then listens on free ports, so that two checks, or a demo left running, never
#     collide: its configs are copied to target/demo/ with the ports replaced, and the command
#     finds the URLs in FANOUT_DEMO_GATEWAY, FANOUT_DEMO_ADMIN and FANOUT_DEMO_<SERVICE>
#     (FANOUT_DEMO_CATALOG, …);
#   - without one: serves on the ports of demo/*.yaml (8080, 9901, 7101–7107), prints what to
#     try and serves until Ctrl-C (`make run`).
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

# The demo's ports: the gateway, its admin listener, then the services in demo/backends.yaml.
fixed=(8080 9901 7101 7102 7103 7104 7105 7106 7107)
services=(CATALOG PRICING INVENTORY REVIEWS RECOMMENDATIONS CARTS SELLERS)
logs=target/demo
mkdir -p "$logs"
config=demo/fanout.yaml
backends=demo/backends.yaml
ports=("${fixed[@]}")
if [ $# -gt 0 ]; then
  # With a command: free ports (bound and released here; the demo binds them a moment later),
  # and the servers log to files so their lines do not mix with the command's output.
  read -r -a ports <<<"$(python3 -c '
import socket
sockets = [socket.socket() for _ in range(9)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
')"
  moves=()
  for i in "${!fixed[@]}"; do moves+=(-e "s/127\.0\.0\.1:${fixed[$i]}\b/127.0.0.1:${ports[$i]}/g"); done
  config=$logs/fanout.yaml
  backends=$logs/backends.yaml
  sed "${moves[@]}" demo/fanout.yaml >"$config"
  sed "${moves[@]}" demo/backends.yaml >"$backends"
  exec 3>"$logs/mockend.log" 4>"$logs/fanout.log"
else
  exec 3>&1 4>&1
fi
export FANOUT_DEMO_GATEWAY=http://127.0.0.1:${ports[0]} FANOUT_DEMO_ADMIN=http://127.0.0.1:${ports[1]}
for i in "${!services[@]}"; do export "FANOUT_DEMO_${services[$i]}=http://127.0.0.1:${ports[$((i + 2))]}"; done
"$bin/mockend" --config "$backends" >&3 2>&1 &
pids+=($!)
"$bin/fanout" serve --config "$config" >&4 2>&1 &
pids+=($!)

ready=
for _ in $(seq 1 100); do
  if curl -sf "$FANOUT_DEMO_ADMIN/readyz" >/dev/null 2>&1 && curl -sf "$FANOUT_DEMO_CATALOG/bench/1" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "the demo did not start (ports ${ports[*]} busy? logs: $logs)" >&2; exit 1; }

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
