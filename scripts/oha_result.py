"""Reads one oha JSON result (`oha --output-format json --no-tui`, oha 1.16).

Shared by scripts/bench_summary.py and scripts/load_summary.py, so the format is parsed in one
place. What the JSON holds, and what this module makes of it:

- `summary.requestsPerSec`: requests per second over the run, the requests cut off at the
  deadline included (which makes it the steady-state rate: those make up for the first
  latency-long stretch of the run in which nothing had ended yet).
- `latencyPercentiles`: p10 … p99.99, **in seconds** (converted to milliseconds here). With
  `-q RPS --latency-correction` they are measured from each request's scheduled send time, so
  they include the time a request waited for a free connection (coordinated omission).
- `statusCodeDistribution`: answers per status code, `{"200": 1595, "502": 3}`.
- `errorDistribution`: requests that got no answer, per error message (`connection refused`,
  a timeout, …). `aborted due to deadline` counts the requests cut off when `-z` ran out
  (in flight, or queued by the rate limiter): an artefact of stopping, not failures, kept apart.

The success rate is the 2xx share of the requests that ended: 2xx answers divided by all
answers plus all failed requests (deadline aborts excluded). oha's own `summary.successRate`
counts any answer, even a 502, as a success, so it is not used.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

DEADLINE_ABORT = "aborted due to deadline"

# The percentiles oha reports, as keys of `latencyPercentiles`.
PERCENTILES = ("p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99")


@dataclass
class OhaResult:
    path: str
    rps: float  # requests per second over the run
    duration_s: float  # wall time of the run
    status_codes: dict = field(default_factory=dict)  # {"200": 1595, ...}, by code
    errors: dict = field(default_factory=dict)  # failed requests by message, deadline aborts excluded
    deadline_aborted: int = 0  # in flight when the duration ran out (not failures)
    latency_ms: dict = field(default_factory=dict)  # {"p50": 26.9, "p99.9": 29.1, ...}

    @property
    def total(self):
        """Requests that got an answer, whatever its status."""
        return sum(self.status_codes.values())

    @property
    def ok(self):
        """Requests answered with a 2xx status."""
        return sum(n for code, n in self.status_codes.items() if code.startswith("2"))

    @property
    def failed(self):
        """Requests that got no answer (connection errors, timeouts), deadline aborts excluded."""
        return sum(self.errors.values())

    @property
    def ended(self):
        """Requests that ended: answered or failed."""
        return self.total + self.failed

    @property
    def success_rate(self):
        """2xx answers over all ended requests; 0.0 when nothing ended."""
        return self.ok / self.ended if self.ended else 0.0

    def pct(self, name):
        """A latency percentile in milliseconds (`"p50"`, `"p99.9"`); NaN when absent."""
        return self.latency_ms.get(name, math.nan)

    @property
    def p50(self):
        return self.pct("p50")

    @property
    def p99(self):
        return self.pct("p99")


def _ms(seconds):
    return math.nan if seconds is None else float(seconds) * 1000


def load(path):
    """Parses the oha JSON result at `path`; raises ValueError when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
        summary = data["summary"]
        codes = data.get("statusCodeDistribution") or {}
        errors = dict(data.get("errorDistribution") or {})
        percentiles = data.get("latencyPercentiles") or {}
        result = OhaResult(
            path=str(path),
            rps=float(summary["requestsPerSec"]),
            duration_s=float(summary["total"]),
            status_codes={str(code): int(n) for code, n in sorted(codes.items())},
            deadline_aborted=int(errors.pop(DEADLINE_ABORT, 0)),
            errors={str(msg): int(n) for msg, n in errors.items()},
            latency_ms={name: _ms(percentiles.get(name)) for name in PERCENTILES},
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not an oha JSON result ({type(e).__name__}: {e})") from e
    return result
