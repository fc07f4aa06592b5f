#!/usr/bin/env bash
# Deterministic CPU cost of the gateway: user-space instructions per five-call /bench page,
# counted by callgrind (repeatable whatever else the machine is doing, unlike timings).
# Starts the demo backends (release), a stub OTLP/HTTP receiver when tracing is on, and fanout
# under callgrind; warms up, zeroes the counters, sends N pages with oha (-c 4), dumps, and
# prints instructions per page and allocation calls per page (malloc, calloc, realloc and the
# aligned allocators, counted from the dump's call records by scripts/callgrind_allocs.py).
#   MODE=off       telemetry off (no metrics, no tracing)
#   MODE=metrics   metrics on (the default config)
#   MODE=otlp      metrics + OTLP export, SAMPLING (default 1.0) of requests traced
#   LOG_LEVEL      telemetry.log_level (default warn: no per-request line; info adds it)
# N (default 2000) pages. Output: target/callgrind/MODE*.out (open with callgrind_annotate).
# The tasks that run on a timer (the metrics upkeep every 250 ms, the pool sweep every
# SWEEP_PERIOD) are left out of the count: how many of them fall in a run depends on wall time,
# and the gateway runs ~50x slower under callgrind, so they would weigh ~50x what they weigh at
# speed (the upkeep alone was 8.7 % of a MODE=metrics run). docs/performance.md gives their
# cost per run. (--toggle-collect turns collection off at start; the --collect-atstart=yes
# after it turns it back on, so everything but those two functions is counted.)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-metrics}
SAMPLING=${SAMPLING:-1.0}
N=${N:-2000}
OUT=target/callgrind
bash scripts/tools.sh oha
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
# shellcheck source=scripts/release_backends.sh
source scripts/release_backends.sh
LOG_LEVEL=${LOG_LEVEL:-warn}
env=(FANOUT__TELEMETRY__LOG_LEVEL="$LOG_LEVEL" FANOUT__TELEMETRY__LOG_FORMAT=json)
tag=$MODE
[ "$LOG_LEVEL" = warn ] || tag="$tag-$LOG_LEVEL"
case "$MODE" in
  off) env+=(FANOUT__TELEMETRY__METRICS=false) ;;
  metrics) ;;
  otlp)
    tag="otlp-$SAMPLING"
    # A stub receiver: 200 with an empty (valid, protobuf) body for every export.
    python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 4318), H).serve_forever()' &
    pids+=($!)
    env+=(FANOUT__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:4318 FANOUT__TELEMETRY__SAMPLING_RATIO="$SAMPLING")
    ;;
  *) echo "MODE must be off, metrics or otlp" >&2; exit 2 ;;
esac
rm -f "$OUT/$tag".out*
env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.out" \
  --toggle-collect='gateway::telemetry::metrics::Exporter::install::{{closure}}' \
  --toggle-collect='gateway::upkeep::run::{{closure}}' --collect-atstart=yes \
  ./target/release/fanout serve --config demo/fanout.yaml >"$OUT/$tag.log" 2>&1 &
gateway=$!
pids+=("$gateway")
for _ in $(seq 1 300); do
  curl -sf http://127.0.0.1:9901/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
oha --no-tui -n 500 -c 4 http://127.0.0.1:8080/bench/1 >/dev/null
callgrind_control -z "$gateway" >/dev/null
oha --no-tui -n "$N" -c 4 --output-format json http://127.0.0.1:8080/bench/1 >"$OUT/$tag-oha.json"
callgrind_control -d "$gateway" >/dev/null
sleep 1
dump=$(ls -t "$OUT/$tag".out.* | head -1)
total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"].get("200", 0))' "$OUT/$tag-oha.json")
echo "$tag: $ok/$N pages 200, $((total / N)) instructions per page ($dump)"
echo "$tag: $(python3 scripts/callgrind_allocs.py "$dump" "$N")"
