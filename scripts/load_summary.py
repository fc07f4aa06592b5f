"""Prints the one-screen summary of scripts/load.sh from oha's JSON results, and checks the
gateway's success rate against a threshold.

usage: load_summary.py --gateway FILE [--gateway-url URL] [--baseline FILE --baseline-url URL]
                       [--mode closed|rate] [--connections N] [--rate RPS] [--duration D]
                       [--min-success 0.99]

Only --gateway is required: the other options describe the run in the header, so the script
also summarises a result made elsewhere (e.g. the Kubernetes Job's log, docs/load-testing.md).

Exits 1 when the gateway's success rate (2xx answers / requests that ended, see oha_result.py)
is below --min-success, 2 when a file is not an oha result, 0 otherwise.
"""
import argparse
import math
import sys

from oha_result import load

LATENCIES = ("p50", "p90", "p99", "p99.9")
RATIOS = ("p50", "p99")  # latency columns that get a gateway/baseline ratio
RATE_SHORTFALL = 0.95  # warn when fixed-rate mode ran at less than this share of the target


def fmt_ms(value):
    return f"{'-':>9}" if math.isnan(value) else f"{value:>9.2f}"


def fmt_ratio(num, den):
    if math.isnan(num) or math.isnan(den) or den <= 0:
        return f"{'-':>9}"
    return f"{num / den:>8.2f}x"


def row(name, r):
    cells = "".join(f" {fmt_ms(r.pct(p))}" for p in LATENCIES)
    print(f"  {name:<17} {r.rps:>10.1f}{cells} {r.success_rate * 100:>8.2f}%")


def ratio_row(gateway, baseline):
    cells = "".join(
        f" {fmt_ratio(gateway.pct(p), baseline.pct(p)) if p in RATIOS else ' ' * 9}" for p in LATENCIES
    )
    print(f"  {'gateway/baseline':<17} {fmt_ratio(gateway.rps, baseline.rps):>10}{cells}".rstrip())


def outcome(r):
    """Status codes, failures and deadline aborts of one run, on one line."""
    parts = [", ".join(f"{code}: {n}" for code, n in r.status_codes.items()) or "no answers"]
    if r.errors:
        parts.append(
            "failed: " + ", ".join(f"{msg[:48]}: {n}" for msg, n in sorted(r.errors.items(), key=lambda e: -e[1]))
        )
    if r.deadline_aborted:
        parts.append(f"{r.deadline_aborted} cut off at the deadline (not counted)")
    return " | ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--gateway-url")
    ap.add_argument("--baseline")
    ap.add_argument("--baseline-url")
    ap.add_argument("--mode", choices=("closed", "rate"))
    ap.add_argument("--connections", type=int)
    ap.add_argument("--rate", type=float)
    ap.add_argument("--duration")
    ap.add_argument("--min-success", type=float, default=0.99)
    args = ap.parse_args()

    try:
        gateway = load(args.gateway)
        baseline = load(args.baseline) if args.baseline else None
    except ValueError as e:
        print(f"load_summary: {e}", file=sys.stderr)
        return 2

    how = []
    if args.mode == "rate":
        how.append(f"fixed rate {args.rate:g} req/s with --latency-correction" if args.rate else "fixed rate")
    elif args.mode == "closed":
        how.append("closed loop")
    if args.connections:
        how.append(f"{'up to ' if args.mode == 'rate' else ''}{args.connections} connections")
    if args.duration:
        how.append(f"{args.duration} per target")
    print(f"\nfanout load test{': ' if how else ''}{', '.join(how)}")
    for name, r, url in (("gateway", gateway, args.gateway_url), ("baseline", baseline, args.baseline_url)):
        if r:
            print(f"  {name:<9} GET {url}\n            oha JSON: {r.path}" if url else f"  {name:<9} oha JSON: {r.path}")
    if not baseline:
        print("  baseline  none")

    header = "".join(f" {p + ' ms':>9}" for p in LATENCIES)
    print(f"\n  {'':<17} {'req/s':>10}{header} {'success':>9}")
    row("gateway", gateway)
    if baseline:
        row("baseline", baseline)
        ratio_row(gateway, baseline)

    print()
    print(f"  gateway   {outcome(gateway)}")
    if baseline:
        print(f"  baseline  {outcome(baseline)}")

    if args.mode == "rate" and args.rate:
        for name, r in (("gateway", gateway), ("baseline", baseline)):
            if r and r.rps < RATE_SHORTFALL * args.rate:
                print(
                    f"\n  WARNING: {name} ran at {r.rps:.1f} of {args.rate:g} req/s: it is saturated, or "
                    f"{args.connections or 'the'} connections\n  are too few (raise CONNECTIONS). Its latencies "
                    "include the time requests waited to be sent."
                )
    if baseline and baseline.success_rate < args.min_success:
        print(f"\n  WARNING: the baseline itself succeeded only {baseline.success_rate * 100:.2f}% of the time.")

    rate, threshold = gateway.success_rate, args.min_success
    verdict = "PASS" if rate >= threshold else "FAIL"
    print(
        f"\n  {verdict}: gateway success rate {rate * 100:.2f}% "
        f"({gateway.ok} 2xx of {gateway.ended} requests) {'>=' if rate >= threshold else '<'} "
        f"MIN_SUCCESS {threshold * 100:.2f}%"
    )
    return 0 if rate >= threshold else 1


if __name__ == "__main__":
    sys.exit(main())
