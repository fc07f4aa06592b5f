# Sourced by the measuring scripts (bench.sh, callgrind.sh): builds the release binaries,
# starts the demo backends (release) with their log in $OUT/mockend.log, and stops every
# process listed in `pids` when the script exits. Scripts add their own processes to `pids`.
cargo build --release --locked --workspace --bins
mkdir -p "$OUT"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
./target/release/mockend --config demo/backends.yaml >"$OUT/mockend.log" 2>&1 &
pids+=($!)
