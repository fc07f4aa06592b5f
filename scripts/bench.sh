#!/usr/bin/env bash
# End-to-end benchmark: starts the simulated backends and the gateway (release builds), then
# with oha, in one run:
#   1. throughput, closed loop (-c): one backend called directly vs the five-call /bench
#      endpoint (0 ms backends); the gateway's CPU per request from /proc/PID/stat, peak RSS;
#   2. latency at a fixed moderate rate (-q, --latency-correction): the 25 ms backend called
#      directly vs /timed (five calls of 5..25 ms), whose p50 should be within 0.3 ms of it.
# Knobs: DURATION (10s), CONCURRENCY (64), RATE (200). Results: target/bench/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-200}
OUT=target/bench
GATEWAY=http://127.0.0.1:8080
ADMIN=http://127.0.0.1:9901

bash scripts/tools.sh oha
# shellcheck source=scripts/release_backends.sh
source scripts/release_backends.sh
FANOUT__TELEMETRY__LOG_LEVEL=warn FANOUT__TELEMETRY__LOG_FORMAT=json \
  ./target/release/fanout serve --config demo/fanout.yaml >"$OUT/fanout.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
for _ in $(seq 1 100); do
  curl -sf "$ADMIN/readyz" >/dev/null 2>&1 && curl -sf http://127.0.0.1:7105/bench/1 >/dev/null 2>&1 && break
  sleep 0.1
done

for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a server failed to start; see $OUT/*.log" >&2; exit 1; }
done

# User and kernel CPU ticks of a process, "utime stime".
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
load() { oha --no-tui --output-format json "$@"; }

echo "warming up"
load -z 2s -c "$CONCURRENCY" "$GATEWAY/bench/1" >/dev/null
echo "throughput: direct backend, then the five-call endpoint (-c $CONCURRENCY, $DURATION each)"
load -z "$DURATION" -c "$CONCURRENCY" http://127.0.0.1:7101/bench/1 >"$OUT/direct.json"
read -r user_before sys_before < <(cpu_ticks "$gateway_pid")
load -z "$DURATION" -c "$CONCURRENCY" "$GATEWAY/bench/1" >"$OUT/gateway.json"
read -r user_after sys_after < <(cpu_ticks "$gateway_pid")
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gateway_pid/status")
echo "latency: 25 ms backend direct, then five calls of 5..25 ms (-q $RATE, $DURATION each)"
load -z "$DURATION" -q "$RATE" --latency-correction -c 32 http://127.0.0.1:7105/timed/1 >"$OUT/direct-timed.json"
load -z "$DURATION" -q "$RATE" --latency-correction -c 32 "$GATEWAY/timed/1" >"$OUT/gateway-timed.json"

python3 scripts/bench_summary.py "$OUT" "$((user_after - user_before))" "$((sys_after - sys_before))" \
  "$(getconf CLK_TCK)" "$peak_rss_kb"
