"""Prints the figures of scripts/state_bench.sh as a Markdown table: per mode, pages/s, the
latency percentiles and the gateway's CPU time per page, each also as a ratio to a baseline
of the same run (`miss` for the cache, `limit` for Redis), so machines can be compared.

Usage: state_table.py OUT CLK_TCK (OUT holds MODE.json from oha and MODE.cpu, CPU ticks).
"""
import sys
from pathlib import Path

from oha_result import load

MODES = ("direct", "miss", "hit", "limit", "limit_redis", "redis_down")


def main(out, ticks_per_s):
    rows = {}
    for mode in MODES:
        result = load(out / f"{mode}.json")
        cpu = out / f"{mode}.cpu"
        cpu_us = float(cpu.read_text()) / ticks_per_s * 1e6 / max(result.total, 1) if cpu.exists() else None
        failed = result.total - result.ok + sum(result.errors.values())
        rows[mode] = (result, cpu_us, failed)
    print("| mode | pages/s | p50 ms | p99 ms | CPU µs/page | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, (result, cpu_us, failed) in rows.items():
        cpu = f"{cpu_us:.1f}" if cpu_us is not None else "–"
        print(f"| {mode} | {result.rps:,.0f} | {result.latency_ms['p50']:.2f} | {result.latency_ms['p99']:.2f} | {cpu} | {failed} |")
    print()
    for mode, base in (("hit", "miss"), ("limit_redis", "limit"), ("redis_down", "limit")):
        (r, c, _), (b, bc, _) = rows[mode], rows[base]
        print(f"- {mode} / {base}: pages/s ×{r.rps / b.rps:.2f}, p50 ×{r.latency_ms['p50'] / b.latency_ms['p50']:.2f}, "
              f"CPU per page ×{c / bc:.2f} ({c - bc:+.1f} µs)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
