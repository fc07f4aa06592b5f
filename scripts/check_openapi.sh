#!/usr/bin/env bash
# OpenAPI checks, as CI runs them:
#   1. drift: the committed openapi.yaml is exactly what `fanout openapi --config
#      demo/fanout.yaml` generates (regenerate with `make openapi`);
#   2. validity: openapi-spec-validator (OpenAPI 3.1);
#   3. contract: with the demo running, the admin port serves the same document, and
#      schemathesis (every check, positive and negative cases) finds no failure on the public
#      endpoints nor on the admin endpoints.
# SCHEMATHESIS_SEED (default 1) and SCHEMATHESIS_EXAMPLES (default 50) tune the run; the seed
# is fixed so CI is reproducible: change it locally to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED=${SCHEMATHESIS_SEED:-1}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-50}
TOOLS=.tools/venv/bin

if [ "${1:-}" = --live ]; then
  # The demo's URLs (scripts/with_demo.sh picks free ports); its document names their ports
  # where the committed one, generated from demo/fanout.yaml, has 8080 and 9901.
  gateway=${FANOUT_DEMO_GATEWAY:-http://127.0.0.1:8080}
  admin=${FANOUT_DEMO_ADMIN:-http://127.0.0.1:9901}
  echo "openapi: the admin port serves the committed document (ports aside)"
  curl -sf "$admin/openapi.yaml" \
    | sed -e "s/{host}:${gateway##*:}\"/{host}:8080\"/" -e "s/{host}:${admin##*:}\"/{host}:9901\"/" \
    | diff -u openapi.yaml - >/dev/null \
    || { echo "openapi: /openapi.yaml on the admin port differs from openapi.yaml" >&2; exit 1; }
  run() {
    "$TOOLS/schemathesis" run openapi.yaml --checks all --seed "$SEED" --max-examples "$EXAMPLES" \
      --generation-deterministic --no-color "$@"
  }
  echo "openapi: schemathesis on the public endpoints"
  run --url "$gateway" --exclude-tag admin
  echo "openapi: schemathesis on the admin endpoints"
  run --url "$admin" --include-tag admin
  exit 0
fi

bash scripts/tools.sh python
cargo build --locked -p gateway --bin fanout
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
./target/debug/fanout openapi --config demo/fanout.yaml >"$generated"
if ! diff -u openapi.yaml "$generated"; then
  echo "openapi: openapi.yaml is stale: run 'make openapi' and commit it" >&2
  exit 1
fi
echo "openapi: openapi.yaml matches the demo config"
"$TOOLS/openapi-spec-validator" openapi.yaml
bash scripts/with_demo.sh bash scripts/check_openapi.sh --live
echo "openapi checks passed"
