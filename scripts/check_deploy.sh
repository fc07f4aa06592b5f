#!/usr/bin/env bash
# Checks deploy/ end to end, from a fresh clone: hadolint on deploy/Dockerfile; the image's
# build (scripts/build_release.sh, which both Dockerfile stages run), run here; base, overlay
# and load-test manifests rendered with kubectl kustomize and validated with
# kubernetes-validate --strict; the rendered gateway
# configs through `fanout check`; probe/port/grace consistency between manifests and config;
# and the built binary answering the probe paths, then exiting 0 on SIGTERM.
# The steps live in scripts/check_deploy.py. Usage: scripts/check_deploy.sh [--skip-build]
# (KUBE_VERSIONS="1.30.0 1.37.0" picks the Kubernetes schemas validated against.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh python kubectl
exec .tools/venv/bin/python scripts/check_deploy.py "$@"
