"""Prometheus metrics (one registry per gateway, so several may live in one process).

The per-request and per-command counters are plain integers in dicts, bumped on the event loop
(one dict update, no lock, no label lookup), and turned into Prometheus counters only when
``/metrics`` is scraped: a ``prometheus_client`` ``labels(...).inc()`` costs microseconds, and
the hot path bumps several counters per order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from openbell._build import core_build

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class _Counters:
    """Exports the Metrics' plain counters at scrape time (a prometheus_client collector)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        families: list[tuple[str, str, list[str], dict[tuple[str, ...], int]]] = [
            (
                "openbell_gateway_commands",
                "Commands sequenced by the node, by type (gateway and other sources)",
                ["type"],
                {(name,): n for name, n in m.commands.items()},
            ),
            (
                "openbell_gateway_rejections",
                "Commands the engine rejected, by reason",
                ["reason"],
                {(reason,): n for reason, n in m.rejections.items()},
            ),
            (
                "openbell_gateway_http_errors",
                "Requests the gateway refused, by HTTP status and code",
                ["status", "code"],
                {(str(status), code): n for (status, code), n in m.http_errors.items()},
            ),
            (
                "openbell_gateway_http_requests",
                "HTTP requests, by route and status",
                ["route", "status"],
                {(route, str(status)): n for (route, status), n in m.requests.items()},
            ),
        ]
        for name, documentation, labels, values in families:
            family = CounterMetricFamily(name, documentation, labels=labels)
            for label_values, n in sorted(values.items()):
                family.add_metric(list(label_values), float(n))
            yield family
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        bounds = [repr(float(b)) for b in BATCH_BUCKETS] + ["+Inf"]  # as prometheus_client
        for bound, n in zip(bounds, m.batch_counts, strict=True):
            cumulative += n
            buckets.append((bound, float(cumulative)))
        yield HistogramMetricFamily(
            "openbell_gateway_batch_size",
            "Commands per durable batch",
            buckets=buckets,
            sum_value=float(m.batch_sum),
        )


class Metrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        # plain counters, updated on the event loop only
        self.commands: dict[str, int] = {}  # command type -> count
        self.rejections: dict[str, int] = {}  # engine reject reason -> count
        self.http_errors: dict[tuple[int, str], int] = {}  # (status, code) -> count
        self.requests: dict[tuple[str, int], int] = {}  # (route, status) -> count
        self.batch_counts = [0] * (len(BATCH_BUCKETS) + 1)  # per bucket (not cumulative), +Inf
        self.batch_sum = 0
        self.registry.register(_Counters(self))
        depth = Gauge(
            "openbell_gateway_queue_depth",
            "Commands and queries waiting for the sequencer",
            registry=self.registry,
        )
        depth.set_function(queue_depth)
        self.ws_clients = Gauge(
            "openbell_gateway_ws_clients", "Open WebSocket connections", registry=self.registry
        )
        Info(
            "openbell_core", "Which build of the core runs (compiled or interpreted)",
            registry=self.registry,
        ).info({"build": core_build()})  # fmt: skip

    def watch_node(self, figures: Callable[[], dict[str, float]]) -> None:
        """Gauges of the node's brakes read at scrape time: ``halted`` (1 after a consistency
        halt), ``ipo_lane_queue_depth``, ``ipo_lane_refused_rate``, ``ipo_lane_refused_full``."""
        for key, documentation in (
            ("halted", "1 when the venue is halted (consistency halt: see DATA/HALTED)"),
            ("ipo_lane_queue_depth", "IPO commands waiting in their own admission lane"),
            ("ipo_lane_refused_rate", "IPO subscriptions refused by the lane's rate limit"),
            ("ipo_lane_refused_full", "IPO subscriptions refused because the lane was full"),
            ("surge_venue_protected", "1 while the venue is in surge protection mode"),
            ("surge_venue_rate_per_s", "Order-entry commands in the venue's last closed second"),
            ("surge_venue_threshold_per_s", "Commands per second that trip venue protection"),
            ("surge_accounts_protected", "Accounts in surge protection mode"),
            ("loss_limits", "Floating-loss red lines set"),
            ("loss_limits_tripped", "Red lines tripped and not yet resumed"),
            ("volatility_bands", "Instruments with a dynamic volatility band"),
            ("volatility_auctions", "Instruments in a volatility auction"),
        ):
            gauge = Gauge(f"openbell_node_{key}", documentation, registry=self.registry)
            gauge.set_function(lambda key=key: figures().get(key, 0.0))  # type: ignore[misc]

    def observe_batch(self, size: int) -> None:
        self.batch_counts[bisect_left(BATCH_BUCKETS, size)] += 1
        self.batch_sum += size

    def count_request(self, route: str, status: int) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_error(self, status: int, code: str) -> None:
        key = (status, code)
        self.http_errors[key] = self.http_errors.get(key, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)
