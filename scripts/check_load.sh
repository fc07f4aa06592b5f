#!/usr/bin/env bash
# CI smoke check of the load-testing tooling (scripts/load.sh): starts the demo
# (scripts/with_demo.sh; FANOUT_BUILD=release for release binaries) and runs a short load test
# against it twice, closed loop then fixed rate, each with its direct-to-backend baseline. Fails
# when a run fails (gateway success rate under MIN_SUCCESS, oha error, …), when a JSON result
# is missing or unreadable, or when load.sh does not fail fast without a gateway.
# About 20 s plus the builds. Results: target/load-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

export OUT=target/load-check
export DURATION=${DURATION:-2s}
export WARMUP=${WARMUP:-1s}
export MIN_SUCCESS=${MIN_SUCCESS:-0.99}
unset GATEWAY BASELINE ENDPOINT CONNECTIONS RATE MODE

bash scripts/tools.sh oha
rm -f "$OUT"/gateway-*.json "$OUT"/baseline-*.json "$OUT"/summary-*.txt

echo "check_load: without a gateway, load.sh must fail fast and say how to start one"
# Port 9 (discard) on loopback: nothing listens there.
if msg=$(GATEWAY=http://127.0.0.1:9 bash scripts/load.sh 2>&1); then
  echo "check_load: FAIL: load.sh succeeded without a gateway" >&2
  exit 1
fi
grep -q 'make run' <<<"$msg" || { echo "check_load: FAIL: unexpected message: $msg" >&2; exit 1; }

echo "check_load: closed loop, then fixed rate, against the demo (its fixed gateway port held meanwhile)"
# A demo left running (make run) holds 8080; here a listener stands in for it: a demo started for
# a check must pick free ports and not collide with it. (If 8080 is taken already, the point is made.)
python3 -c '
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 8080))
s.listen()
time.sleep(600)
' 2>/dev/null &
holder=$!
trap 'kill "$holder" 2>/dev/null || true' EXIT
bash scripts/with_demo.sh bash -c '
  set -euo pipefail
  MODE=closed CONNECTIONS=16 bash scripts/load.sh
  MODE=rate RATE=100 bash scripts/load.sh
'

python3 - "$OUT" <<'PY'
import sys
sys.path.insert(0, "scripts")
from oha_result import load

out = sys.argv[1]
for mode in ("closed", "rate"):
    for target in ("gateway", "baseline"):
        r = load(f"{out}/{target}-{mode}.json")  # raises when missing or not oha JSON
        assert r.ended > 0, f"{r.path}: no request ended"
        assert r.ok > 0 and r.p50 == r.p50, f"{r.path}: no 2xx answer or no latency"
        print(f"check_load: {r.path}: {r.ended} requests, {r.success_rate:.2%} 2xx, p50 {r.p50:.2f} ms")
PY
echo "check_load: OK"
