"""Prints the table of docs/resilience.md from the runs of scripts/resilience.sh: for each
misbehaving backend, the gateway with every policy off and with the recommended one on.

Per run (`OUT/MODE-SCENARIO.*`): oha's JSON result, mockend's request counts
(`.backend.json`), the run's start (`.start`, when mockend started: the outage begins 5 s
later and lasts 5 s) and the gateway's JSON log (`.log`, breaker state changes).
"""
import json
import sys
from datetime import datetime
from pathlib import Path

from oha_result import load

OUTAGE_START_S, OUTAGE_S = 5.0, 5.0


def backend_requests(out, tag):
    return json.loads((out / f"{tag}.backend.json").read_text())


def per_page(out, tag):
    """Backend requests per answered page."""
    result = load(out / f"{tag}.json")
    return backend_requests(out, tag)["requests"] / max(result.total, 1)


def transitions(out, tag):
    """Breaker state changes as (seconds since the run's start, from, to)."""
    start = float((out / f"{tag}.start").read_text())
    changes = []
    for line in (out / f"{tag}.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("message") == "circuit breaker changed state":
            at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            changes.append((at - start, entry["from"], entry["to"]))
    return changes


def outage_row(out, mode):
    tag = f"{mode}-outage"
    result = load(out / f"{tag}.json")
    sent = backend_requests(out, tag)["outage_requests"]
    changes = transitions(out, tag)
    opened = next((t for t, _, to in changes if to == "open"), None)
    closed = next((t for t, _, to in changes if to == "closed" and t > OUTAGE_START_S + OUTAGE_S), None)
    fail_fast = "—" if opened is None else f"{(opened - OUTAGE_START_S) * 1000:.0f} ms"
    recover = "—" if closed is None else f"{(closed - OUTAGE_START_S - OUTAGE_S) * 1000:.0f} ms"
    return f"{sent} sent while down; open after {fail_fast}; closed {recover} after it is back; success {result.success_rate:.1%}"


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/resilience")
    rows = []
    off, on = load(out / "off-flaky.json"), load(out / "on-flaky.json")
    rows.append((
        "10 % transient 503s on a required call (`retry: {}`)",
        f"success {off.success_rate:.2%}, {per_page(out, 'off-flaky'):.2f} backend requests/page",
        f"success {on.success_rate:.2%}, {per_page(out, 'on-flaky'):.2f} backend requests/page",
    ))
    off, on = load(out / "off-tail.json"), load(out / "on-tail.json")
    rows.append((
        "2 % of answers 300 ms late (`hedge: {}`)",
        f"p50 {off.p50:.1f} ms, p99 {off.p99:.1f} ms, p99.9 {off.pct('p99.9'):.1f} ms, {per_page(out, 'off-tail'):.3f} requests/page",
        f"p50 {on.p50:.1f} ms, p99 {on.p99:.1f} ms, p99.9 {on.pct('p99.9'):.1f} ms, {per_page(out, 'on-tail'):.3f} requests/page",
    ))
    rows.append((
        "backend down (503) for 5 s, then back (`circuit_breaker: { window: 2s, open_for: 1s }`)",
        outage_row(out, "off"),
        outage_row(out, "on"),
    ))
    off, on = load(out / "off-popular.json"), load(out / "on-popular.json")
    rows.append((
        "500 clients loading the same page, 100 ms backend (`coalesce: true`)",
        f"{per_page(out, 'off-popular'):.3f} backend requests/page, {off.rps:.0f} pages/s, p99 {off.p99:.0f} ms",
        f"{per_page(out, 'on-popular'):.3f} backend requests/page, {on.rps:.0f} pages/s, p99 {on.p99:.0f} ms",
    ))
    print("| backend | policy off | policy on |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
