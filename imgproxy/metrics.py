"""Prometheus metrics for /metrics.

Only the event-loop process serves HTTP, and it times every stage of every
task, including the time a task spends in a worker; workers record nothing.
So one registry in that process covers all workers, with no multiprocess
directory to manage, and a restarted worker loses no numbers.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _PoolCollector:
    """Reads the pool's state at scrape time, so the gauges are never stale."""

    def __init__(self, stats: Callable[[], object]):
        self._stats = stats

    def collect(self):
        s = self._stats()
        workers = GaugeMetricFamily("imgproxy_pool_workers", "Worker processes by state", labels=["state"])
        workers.add_metric(["total"], s.total)
        workers.add_metric(["alive"], s.alive)
        workers.add_metric(["busy"], s.busy)
        yield workers
        yield GaugeMetricFamily("imgproxy_pool_utilization", "Busy workers / all workers",
                                value=s.busy / s.total if s.total else 0.0)
        yield GaugeMetricFamily("imgproxy_pool_queue_length", "Tasks waiting for a worker", value=s.queued)
        yield CounterMetricFamily("imgproxy_worker_restarts", "Workers replaced after dying or a deadline",
                                  value=s.restarts)


class Metrics:
    def __init__(self, pool_stats: Callable[[], object] | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imgproxy_requests", "Image requests answered", ["status", "op"], registry=r)
        self.seconds = Histogram("imgproxy_request_seconds", "Time per stage of an image request",
                                 ["stage"], buckets=_BUCKETS, registry=r)
        self.fetched_bytes = Counter("imgproxy_fetched_bytes",
                                     "Source bytes loaded (from origins, or the cache of originals)", registry=r)
        self.sent_bytes = Counter("imgproxy_sent_bytes", "Body bytes sent to clients", registry=r)
        self.cache = Counter("imgproxy_cache_requests", "Result cache look-ups", ["result"], registry=r)
        self.source_cache = Counter("imgproxy_source_cache_requests", "Cache of originals: look-ups",
                                    ["result"], registry=r)
        self.origin_fetches = Counter("imgproxy_origin_fetches", "Fetches from configured origins, by outcome",
                                      ["origin", "outcome"], registry=r)
        if pool_stats is not None:
            self.watch_pool(pool_stats)

    def watch_pool(self, pool_stats: Callable[[], object]) -> None:
        """Report the pool's state (read at scrape time)."""
        self.registry.register(_PoolCollector(pool_stats))

    def observe(self, stage: str, seconds: float) -> None:
        self.seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
