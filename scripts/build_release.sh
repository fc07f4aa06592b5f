#!/bin/sh
# The release build of the fanout binary: the one command the container image runs (both
# stages of deploy/Dockerfile) and CI runs (scripts/check_deploy.sh), so CI compiles exactly
# what the image ships. Run from the repository root (the image's /src).
set -eu
exec cargo build --release --locked -p gateway --bin fanout
