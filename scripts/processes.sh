# Sourced by the scripts that start local servers for a measurement (scripts/resilience.sh,
# scripts/state_bench.sh): they add each server's pid to PIDS; `stop` ends them all (and runs
# on exit); `wait_for URL` waits up to 5 s for URL to answer, else fails the script.
PIDS=()
stop() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop EXIT

wait_for() {
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "$(basename "$0"): $1 did not answer" >&2
  exit 1
}
