"""Prints the one-screen summary of scripts/bench.sh from oha's JSON results.

usage: bench_summary.py OUT_DIR GATEWAY_USER_TICKS GATEWAY_SYS_TICKS CLK_TCK PEAK_RSS_KB
"""
import sys

from oha_result import load


def row(name, r):
    print(f"  {name:<34} {r.rps:>10.0f} {r.p50:>9.3f} {r.p99:>9.3f} {r.ok:>9}/{r.total}")


def main():
    out, clk_tck, rss_kb = sys.argv[1], int(sys.argv[4]), int(sys.argv[5])
    user_ticks, sys_ticks = int(sys.argv[2]), int(sys.argv[3])
    direct, gateway = load(f"{out}/direct.json"), load(f"{out}/gateway.json")
    direct_t, gateway_t = load(f"{out}/direct-timed.json"), load(f"{out}/gateway-timed.json")
    print(f"\n  {'run':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'2xx/all':>12}")
    row("direct: one backend /bench", direct)
    row("gateway: five calls /bench", gateway)
    row("direct: 25 ms backend /timed", direct_t)
    row("gateway: five calls 5..25 ms /timed", gateway_t)

    def per_page(ticks):
        return ticks / clk_tck / max(gateway.total, 1) * 1e6

    cpu_us, user_us, sys_us = per_page(user_ticks + sys_ticks), per_page(user_ticks), per_page(sys_ticks)
    # No absolute CPU target: the same page costs several times more on one 2-core machine than
    # on another. The goal is relative (<= 0.75x nginx + Lua's, docs/performance.md).
    print(f"\n  gateway CPU per five-call request: {cpu_us:.1f} us   (compare with nginx + Lua: ../shared/bench)")
    print(f"    of which user / kernel:          {user_us:.1f} / {sys_us:.1f} us")
    print(f"  gateway peak RSS:                  {rss_kb / 1024:.1f} MB (target <= 30)")
    print(f"  page rate / direct backend rate:   {gateway.rps / direct.rps:.3f}")
    print(f"  /timed p50 over the slowest call:  {gateway_t.p50 - direct_t.p50:+.3f} ms (target <= 0.3)")


if __name__ == "__main__":
    main()
