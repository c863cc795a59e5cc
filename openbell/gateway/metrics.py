"""Prometheus metrics (one registry per gateway, so several may live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "openbell_gateway_commands",
            "Commands sequenced by the node, by type (gateway and other sources)",
            ["type"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "openbell_gateway_rejections",
            "Commands the engine rejected, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.http_errors = Counter(
            "openbell_gateway_http_errors",
            "Requests the gateway refused, by HTTP status and code",
            ["status", "code"],
            registry=self.registry,
        )
        self.requests = Counter(
            "openbell_gateway_http_requests",
            "HTTP requests, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "openbell_gateway_batch_size",
            "Commands per durable batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
            registry=self.registry,
        )
        depth = Gauge(
            "openbell_gateway_queue_depth",
            "Commands and queries waiting for the sequencer",
            registry=self.registry,
        )
        depth.set_function(queue_depth)
        self.ws_clients = Gauge(
            "openbell_gateway_ws_clients", "Open WebSocket connections", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
