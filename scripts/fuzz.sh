#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after the other (one process each: the CPUs are
# shared), each on a scratch copy of its committed seed corpus, and prints one summary line per
# target. Usage: scripts/fuzz.sh [TARGET...]   (default: every target; docs/fuzzing.md)
#   FUZZ_TIME=S   seconds per target; when unset, FUZZ_RUNS executions per target
#   FUZZ_RUNS=N   executions per target (default 1000000)
# A crash stops the run and leaves its input in fuzz/artifacts/<target>/: fix the code, then
# copy the input to fuzz/regressions/<target>/ so that `cargo test` replays it for good.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(config templates body request_head)
if [ $# -gt 0 ]; then TARGETS=("$@"); fi
RUNS=${FUZZ_RUNS:-1000000}
if [ -n "${FUZZ_TIME:-}" ]; then LIMIT=(-max_total_time="$FUZZ_TIME"); else LIMIT=(-runs="$RUNS"); fi

bash scripts/tools.sh cargo-fuzz
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# cargo-fuzz has no --locked: check fuzz/Cargo.lock is current (and fetch) first.
if ! cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml; then
  echo "fuzz: fuzz/Cargo.lock is out of date (a workspace crate's dependencies changed): run" >&2
  echo "  cargo metadata --offline --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null" >&2
  echo "and commit fuzz/Cargo.lock" >&2
  exit 1
fi
# Safe Rust only (unsafe_code = forbid): AddressSanitizer would halve the speed for nothing.
FLAGS=(--fuzz-dir fuzz --sanitizer none)
started=$SECONDS
cargo fuzz build "${FLAGS[@]}"
echo "fuzz: built in $((SECONDS - started)) s" >&2

LOGS=fuzz/corpus-run/logs
mkdir -p "$LOGS"
for target in "${TARGETS[@]}"; do
  work=fuzz/corpus-run/$target
  mkdir -p "$work"
  log=$LOGS/$target.log
  # New inputs go to the first directory (scratch); the seeds are only read.
  if ! cargo fuzz run "${FLAGS[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
    "${LIMIT[@]}" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/, log in $log)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 || true)
  echo "fuzz: $target ok: ${runs:-?} executions, ${secs:-?} exec/s, ${cov:-cov: ?}"
done
