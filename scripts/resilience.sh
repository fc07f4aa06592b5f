#!/usr/bin/env bash
# Fills the table of docs/resilience.md: each misbehaving backend of
# scripts/resilience/backends.yaml (mockend), loaded with oha through the gateway with every
# policy off (scripts/resilience/off.yaml) and with the policy recommended for it
# (scripts/resilience/on.yaml). Each run gets a fresh mockend (so the outage starts 5 s into
# it) and a fresh gateway; what reached each backend comes from mockend's /_mockend/requests,
# breaker state changes from the gateway's log. Prints the Markdown table.
#
# Knobs: RATE (requests per second of the rate-mode runs, 200), OUT (target/resilience).
# Uses fixed local ports 17401-17404 and 17480-17481.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-200}
OUT=${OUT:-target/resilience}
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "resilience: RATE must be a positive whole number" >&2; exit 2; }
bash scripts/tools.sh oha
cargo build --release --locked --quiet -p gateway -p mockend
mkdir -p "$OUT"

# shellcheck source=scripts/processes.sh
source scripts/processes.sh

# run MODE SCENARIO BACKEND_PORT OHA_ARGS...
run() {
  local mode=$1 scenario=$2 port=$3
  shift 3
  local tag="$OUT/$mode-$scenario"
  date +%s.%N >"$tag.start"
  ./target/release/mockend --config scripts/resilience/backends.yaml >"$tag.mockend.log" 2>&1 &
  PIDS+=($!)
  wait_for "http://127.0.0.1:$port/_mockend/requests"
  ./target/release/fanout serve --config "scripts/resilience/$mode.yaml" >"$tag.log" 2>&1 &
  PIDS+=($!)
  wait_for http://127.0.0.1:17481/readyz
  oha --no-tui --output-format json "$@" "http://127.0.0.1:17480/$scenario" >"$tag.json"
  curl -sf "http://127.0.0.1:$port/_mockend/requests" >"$tag.backend.json"
  stop
  echo "resilience: $mode $scenario done" >&2
}

for mode in off on; do
  run "$mode" flaky 17401 -z 15s -q "$RATE" --latency-correction -c 32
  run "$mode" tail 17402 -z 15s -q "$RATE" --latency-correction -c 64
  run "$mode" outage 17403 -z 15s -q "$RATE" --latency-correction -c 64
  run "$mode" popular 17404 -z 10s -c 500
done
python3 scripts/resilience_table.py "$OUT"
