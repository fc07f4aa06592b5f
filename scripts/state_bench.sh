#!/usr/bin/env bash
# The figures of docs/caching.md and docs/rate-limits.md: one three-call page
# (scripts/state/gateway.yaml over scripts/state/backends.yaml), loaded with oha (closed loop)
# in each mode, with a direct-to-backend baseline in the same run; for each, pages/s, latency
# and the gateway's CPU time per page (utime + stime from /proc, over the run).
#   direct       oha straight at one backend (the baseline)
#   miss         the gateway, no cache: every page makes three backend calls
#   hit          a cache on each backend: every page after the first is three fresh hits
#   limit        server.rate_limit (never refusing: 1,000,000/s), buckets in memory
#   limit_redis  the same limit, buckets in Redis (state.redis): one round trip per page
#   redis_down   the same, Redis not running: Redis skipped after a failure, local buckets
# Knobs: DURATION (10s), CONNECTIONS (32), OUT (target/state). Uses fixed local ports
# 17501-17503, 17580-17581 and 17590 (Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
OUT=${OUT:-target/state}
bash scripts/tools.sh oha redis
cargo build --release --locked --quiet -p gateway -p mockend
mkdir -p "$OUT"

# shellcheck source=scripts/processes.sh
source scripts/processes.sh

# The gateway's CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

./target/release/mockend --config scripts/state/backends.yaml >"$OUT/mockend.log" 2>&1 &
PIDS+=($!)
wait_for http://127.0.0.1:17501/x
redis-server --port 17590 --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS=$!
PIDS+=("$REDIS")
for _ in $(seq 100); do redis-cli -p 17590 ping >/dev/null 2>&1 && break; sleep 0.05; done

oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" http://127.0.0.1:17501/x >"$OUT/direct.json"
echo "state_bench: direct done" >&2

# gateway MODE ENV...: one run of the gateway with these overrides.
gateway() {
  local mode=$1
  shift
  env "$@" ./target/release/fanout serve --config scripts/state/gateway.yaml >"$OUT/$mode.log" 2>&1 &
  local pid=$!
  wait_for http://127.0.0.1:17581/readyz
  curl -sf -o /dev/null http://127.0.0.1:17580/page
  local before
  before=$(cpu_ticks "$pid")
  oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" http://127.0.0.1:17580/page >"$OUT/$mode.json"
  echo $(( $(cpu_ticks "$pid") - before )) >"$OUT/$mode.cpu"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "state_bench: $mode done" >&2
}

CACHE=(FANOUT__BACKENDS__A__CACHE__MAX_BYTES=64MiB FANOUT__BACKENDS__B__CACHE__MAX_BYTES=64MiB
  FANOUT__BACKENDS__C__CACHE__MAX_BYTES=64MiB)
LIMIT=(FANOUT__SERVER__RATE_LIMIT__RATE=1000000/s FANOUT__SERVER__RATE_LIMIT__BURST=1000000)
gateway miss
gateway hit "${CACHE[@]}"
gateway limit "${LIMIT[@]}"
gateway limit_redis "${LIMIT[@]}" FANOUT__STATE__REDIS__URL=redis://127.0.0.1:17590
kill "$REDIS"
wait "$REDIS" 2>/dev/null || true
gateway redis_down "${LIMIT[@]}" FANOUT__STATE__REDIS__URL=redis://127.0.0.1:17590
python3 scripts/state_table.py "$OUT" "$(getconf CLK_TCK)"
