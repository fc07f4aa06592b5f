#!/usr/bin/env bash
# Deterministic cost of the strict JSON check (compose::check_json) on the ~1 KB body of the
# demo's /bench backends: callgrind counts the instructions of the check_json_cost example run
# with 1 and with 1,001 checks; the difference over 1,000 is one check. Prints instructions per
# body and per byte. On a CPU with AVX2 this is the AVX2 path (valgrind runs AVX2, not AVX-512).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
cargo=${CARGO:-cargo}
"$cargo" build --release --locked -q -p compose --example check_json_cost
# Where cargo put it (CARGO_TARGET_DIR or a config may move the target directory).
target=$("$cargo" metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
binary=$target/release/examples/check_json_cost
bytes=$("$binary" 0 | cut -d' ' -f1)
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$1" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
one=$(count 1)
many=$(count 1001)
awk -v one="$one" -v many="$many" -v bytes="$bytes" 'BEGIN {
  body = (many - one) / 1000
  printf "check_json: %.0f instructions per %d-byte body, %.2f per byte\n", body, bytes, body / bytes
}'
