"""Prometheus metrics named as kube-apiserver names them, on a registry per server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total",
            "Requests by verb, resource and HTTP code.",
            ["verb", "resource", "subresource", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches excluded).",
            ["verb", "resource"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.watchers = Gauge(
            "apiserver_registered_watchers",
            "Open watch streams by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.revision = Gauge(
            "switchboard_storage_revision",
            "The store's current revision (the newest resourceVersion).",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def verb_of(method: str, has_name: bool, watch: bool) -> str:
    """Kubernetes' verb for a request, as its metrics label it."""
    if watch:
        return "WATCH"
    if method == "GET":
        return "GET" if has_name else "LIST"
    if method == "DELETE" and not has_name:
        return "DELETECOLLECTION"
    return method
