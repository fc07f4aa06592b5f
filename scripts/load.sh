#!/usr/bin/env bash
# Load test against a running gateway (`make run` in another terminal, or any deployment): runs
# oha against one endpoint for a while, then against a backend directly (the baseline) the same
# way, writes oha's JSON results and prints a one-screen summary: req/s, p50/p90/p99/p99.9,
# success rate, status codes, and the gateway/baseline ratios. Exits 1 when the gateway's
# success rate (2xx share) is below MIN_SUCCESS, so CI can use it as a smoke check.
#
# Knobs (environment or make variables: `make load MODE=rate RATE=500`):
#   GATEWAY      gateway base URL                      (http://127.0.0.1:8080)
#   ENDPOINT     path (and query) to load              (/api/products/42)
#   BASELINE     full URL to compare with, or `none`   (against the demo gateway: the backend
#                route matching ENDPOINT, e.g. http://127.0.0.1:7101/products/42; else none)
#   MODE         closed: CONNECTIONS clients, each sending its next request when the last
#                answers; rate: RATE req/s whatever the answers, with --latency-correction (closed)
#   CONNECTIONS  connections (closed: 64; rate: RATE, between 32 and 512)
#   RATE         requests per second in rate mode     (200)
#   DURATION     per target, oha's -z syntax           (10s)
#   WARMUP       unrecorded run before each target, 0 to skip (1s)
#   MIN_SUCCESS  least acceptable gateway 2xx share    (0.99)
#   OUT          output directory                      (target/load): gateway-MODE.json,
#                baseline-MODE.json, summary-MODE.txt
# See docs/load-testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo started by scripts/with_demo.sh (its URLs when it picked free ports, else make run's).
DEMO_GATEWAY=${FANOUT_DEMO_GATEWAY:-http://127.0.0.1:8080}
GATEWAY=${GATEWAY:-$DEMO_GATEWAY}
GATEWAY=${GATEWAY%/}
ENDPOINT=${ENDPOINT:-/api/products/42}
MODE=${MODE:-closed}
RATE=${RATE:-200}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
MIN_SUCCESS=${MIN_SUCCESS:-0.99}
OUT=${OUT:-target/load}

die() { echo "load: $*" >&2; exit 2; }

# --- knobs -------------------------------------------------------------------------------------
case "$MODE" in closed | rate) ;; *) die "MODE must be closed or rate, not '$MODE'" ;; esac
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive whole number of requests per second, not '$RATE'"
if [ -z "${CONNECTIONS:-}" ]; then
  if [ "$MODE" = rate ]; then
    # Enough for every request to take up to a second at the target rate (Little's law).
    CONNECTIONS=$((RATE < 32 ? 32 : RATE > 512 ? 512 : RATE))
  else
    CONNECTIONS=64
  fi
fi
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive whole number, not '$CONNECTIONS'"
[[ "$MIN_SUCCESS" =~ ^(0(\.[0-9]+)?|1(\.0*)?|\.[0-9]+)$ ]] || die "MIN_SUCCESS must be a share between 0 and 1 (e.g. 0.99), not '$MIN_SUCCESS'"
[[ "$GATEWAY" =~ ^https?://[^/]+$ ]] || die "GATEWAY must be a base URL like http://127.0.0.1:8080, not '$GATEWAY'"
[[ "$ENDPOINT" == /* ]] || die "ENDPOINT must be a path starting with /, not '$ENDPOINT'"
[[ "$WARMUP" =~ ^(0|[0-9]+(ms|s|m))$ ]] || die "WARMUP must be 0 or a duration like 1s, not '$WARMUP'"

# The default baseline: the demo backend route that ENDPOINT calls (the one that bounds its
# latency for /timed), only when loading the demo gateway.
if [ -z "${BASELINE:-}" ]; then
  BASELINE=none
  if [ "$GATEWAY" = "$DEMO_GATEWAY" ] || [ "$GATEWAY" = http://localhost:8080 ]; then
    id_re='^/([a-z/]+)/([^/?]+)(\?.*)?$'
    if [[ "$ENDPOINT" =~ $id_re ]]; then
      id=${BASH_REMATCH[2]}
      case "${BASH_REMATCH[1]}" in
        api/products) BASELINE=${FANOUT_DEMO_CATALOG:-http://127.0.0.1:7101}/products/$id ;;
        api/carts) BASELINE=${FANOUT_DEMO_CARTS:-http://127.0.0.1:7106}/carts/$id ;;
        bench) BASELINE=${FANOUT_DEMO_CATALOG:-http://127.0.0.1:7101}/bench/$id ;;
        timed) BASELINE=${FANOUT_DEMO_RECOMMENDATIONS:-http://127.0.0.1:7105}/timed/$id ;; # the slowest (25 ms) of its five calls
      esac
    fi
    [ "$BASELINE" != none ] || echo "load: no default baseline for $ENDPOINT: set BASELINE=URL to compare" >&2
  else
    echo "load: no baseline (set BASELINE=URL to compare the gateway with a backend)" >&2
  fi
fi
[ "$BASELINE" = none ] || [[ "$BASELINE" =~ ^https?://[^/]+ ]] || die "BASELINE must be a full URL or none, not '$BASELINE'"

gateway_url=$GATEWAY$ENDPOINT

# --- fail fast when nothing answers --------------------------------------------------------------
# Prints the status code of one GET, or fails with curl's own message on stderr.
probe() { curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }

probe_err=$(mktemp)
trap 'rm -f "$probe_err"' EXIT
if ! code=$(probe "$gateway_url" 2>"$probe_err"); then
  cat >&2 <<MSG
load: the gateway is not reachable at $GATEWAY (GET $gateway_url: $(sed 's/^curl: ([0-9]*) //' "$probe_err")).
      Start the demo in another terminal with \`make run\` (FANOUT_BUILD=release make run for
      numbers worth keeping), or point GATEWAY at a running gateway: make load GATEWAY=http://host:port
MSG
  exit 2
fi
case "$code" in
  404 | 405) die "GET $gateway_url answered $code: the gateway has no such endpoint (set ENDPOINT to one it serves)" ;;
  2??) ;;
  *) echo "load: warning: GET $gateway_url answered $code before the run" >&2 ;;
esac
if [ "$BASELINE" != none ] && ! code=$(probe "$BASELINE" 2>/dev/null); then
  die "the baseline $BASELINE is not reachable: set BASELINE to a backend URL, or BASELINE=none to skip it"
fi

# --- run ---------------------------------------------------------------------------------------
bash scripts/tools.sh oha
mkdir -p "$OUT"
gateway_json=$OUT/gateway-$MODE.json
baseline_json=$OUT/baseline-$MODE.json
summary_txt=$OUT/summary-$MODE.txt
rm -f "$gateway_json" "$baseline_json" "$summary_txt" # never summarise a previous run's file

args=(-c "$CONNECTIONS")
[ "$MODE" = closed ] || args+=(-q "$RATE" --latency-correction)

# run TARGET_URL JSON_FILE
run() {
  if [ "$WARMUP" != 0 ]; then
    oha --no-tui --output-format quiet -z "$WARMUP" "${args[@]}" "$1" >/dev/null
  fi
  oha --no-tui --output-format json -z "$DURATION" "${args[@]}" "$1" >"$2"
}

how="-c $CONNECTIONS"
[ "$MODE" = closed ] || how="-q $RATE --latency-correction -c $CONNECTIONS"
summary_args=(--gateway "$gateway_json" --gateway-url "$gateway_url")
if [ "$BASELINE" != none ]; then
  echo "load: baseline $BASELINE ($how, $DURATION)" >&2
  run "$BASELINE" "$baseline_json"
  summary_args+=(--baseline "$baseline_json" --baseline-url "$BASELINE")
fi
echo "load: gateway  $gateway_url ($how, $DURATION)" >&2
run "$gateway_url" "$gateway_json"

status=0
python3 scripts/load_summary.py "${summary_args[@]}" --mode "$MODE" --connections "$CONNECTIONS" \
  --rate "$RATE" --duration "$DURATION" --min-success "$MIN_SUCCESS" | tee "$summary_txt" || status=$?
exit "$status"
