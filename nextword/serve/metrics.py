"""The server's Prometheus metrics (``GET /metrics`` with ``--metrics``), written in Prometheus'
text exposition format (version 0.0.4) without a client library.

Every metric is kept whether or not the endpoint is on (a few additions per request); the
endpoint only exposes them. Names follow Prometheus' conventions (``_total`` counters, base units,
seconds); see docs/serving.md for the list.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Counter:
    def __init__(self, name: str, help: str, *, labelled: bool = True) -> None:
        self.name = name
        self.help = help
        self.values: dict[Labels, float] = {} if labelled else {(): 0.0}

    def add(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(key)} {_number(value)}"


class _Histogram:
    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.help = help
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            yield f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {_number(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Metrics:
    """The server's counters, gauges and histograms (thread-safe). Gauges are read from the
    callables given (the queue's current state)."""

    def __init__(self, waiting: Callable[[], int], running: Callable[[], int]) -> None:
        self._lock = threading.Lock()
        self._gauges = {
            "nextword_requests_waiting": ("Requests waiting for the model (the queue's length).", waiting),
            "nextword_requests_running": ("Requests whose engine work is running.", running),
        }
        self.requests = _Counter("nextword_requests_total", "Requests answered, by endpoint and HTTP status.")
        self.rejections = _Counter(
            "nextword_rejections_total",
            "Requests refused before any engine work, by reason (a limit's name, queue_full, invalid_request, ...).",
        )
        self.cancellations = _Counter(
            "nextword_cancellations_total", "Requests cancelled while waiting or running, by reason."
        )
        self.prompt_tokens = _Counter(
            "nextword_prompt_tokens_total", "Prompt tokens of the completions answered.", labelled=False
        )
        self.generation_tokens = _Counter(
            "nextword_generation_tokens_total",
            "Tokens generated, counted as they are generated (cancelled generations included).",
            labelled=False,
        )
        self.sequences = _Counter(
            "nextword_sequences_total", "Sequences generated, by outcome (finished or cancelled)."
        )
        self.ttft = _Histogram(
            "nextword_time_to_first_token_seconds",
            "From a completion's arrival to its first generated chunk.",
            _LATENCY_BUCKETS,
        )
        self.tpot = _Histogram(
            "nextword_time_per_output_token_seconds",
            "Time per generated token after the first (observed once per chunk).",
            _TOKEN_BUCKETS,
        )
        self.duration = _Histogram(
            "nextword_request_duration_seconds", "From a request's arrival to its answer.", _DURATION_BUCKETS
        )

    def count(self, counter: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter named by attribute ``counter`` (with ``labels``)."""
        with self._lock:
            metric = getattr(self, counter)
            assert isinstance(metric, _Counter)
            metric.add(amount, **labels)

    def observe(self, histogram: str, value: float) -> None:
        """Record ``value`` in the histogram named by attribute ``histogram``."""
        with self._lock:
            metric = getattr(self, histogram)
            assert isinstance(metric, _Histogram)
            metric.observe(value)

    def render(self) -> str:
        """Every metric in Prometheus' text format."""
        lines: list[str] = []
        with self._lock:
            for name, (help, read) in self._gauges.items():
                lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {read()}"]
            for metric in (
                self.requests,
                self.rejections,
                self.cancellations,
                self.prompt_tokens,
                self.generation_tokens,
                self.sequences,
            ):
                lines += metric.lines()
            for hist in (self.ttft, self.tpot, self.duration):
                lines += hist.lines()
        return "\n".join(lines) + "\n"
