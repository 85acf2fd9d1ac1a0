"""Prometheus metrics of workers and ingesters (``--metrics-port``), named and served in one place.

Two kinds:
- what this process does, counted as it happens (the worker's frames by verdict, forward-pass time
  and size, capture-to-verdict latency): the module's metric objects, on prometheus-client's default
  registry, as that library intends;
- the line's shared state, read from Redis and the store when scraped (`LineCollector`: queue depth,
  frames published and dropped, refused jobs, outbox depth and age, active model per line). Any
  process of the line shows the same figures; a scrape during an outage leaves those families out
  and counts the failure in ``lineguard_scrape_errors_total``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from sqlalchemy import Engine

from store.outbox import outbox_depth
from store.registry import active_models
from wire.protocol import queue_counters

logger = logging.getLogger(__name__)

FRAMES = Counter("lineguard_frames", "Frames this worker recorded, by line, camera and verdict (good, defect, error)", ["line", "camera", "verdict"])
SCORING_SECONDS = Histogram(
    "lineguard_scoring_seconds", "Seconds of one forward pass of the model", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
)
BATCH_FRAMES = Histogram("lineguard_batch_frames", "Frames per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
CAPTURE_TO_VERDICT_SECONDS = Histogram(
    "lineguard_capture_to_verdict_seconds",
    "Seconds from a frame's capture to its recorded verdict",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
SCRAPE_ERRORS = Counter("lineguard_scrape_errors", "Scrapes that could not read the line's state from Redis or the store", ["service"])


def observe_forward_pass(frames: int, seconds: float) -> None:
    BATCH_FRAMES.observe(frames)
    SCORING_SECONDS.observe(seconds)


def observe_recorded(records: Iterable) -> None:  # noqa: ANN001 - store.records.InspectionRecord
    """Count rows a worker wrote (each once per batch) and their capture-to-verdict latency."""
    for record in records:
        FRAMES.labels(record.line, record.camera, record.verdict).inc()
        CAPTURE_TO_VERDICT_SECONDS.observe(max(0.0, (record.finished_at - record.captured_at).total_seconds()))


class LineCollector(Collector):
    """The line's shared state, read at each scrape (never written)."""

    def __init__(self, redis: Redis, engine: Engine, queue_name: str, outbox_sinks: Sequence[str]) -> None:
        self._redis = redis
        self._engine = engine
        self._queue_name = queue_name
        self._sinks = tuple(outbox_sinks)

    def collect(self) -> Iterator[Metric]:
        try:
            counters = queue_counters(self._redis, self._queue_name)
        except Exception as error:  # noqa: BLE001 - a scrape reports what it can
            logger.debug("metrics: Redis unreadable: %s", error)
            SCRAPE_ERRORS.labels("redis").inc()
        else:
            yield from _queue_metrics(counters)
        try:
            depth = outbox_depth(self._engine, self._sinks)
            models = active_models(self._engine)
        except Exception as error:  # noqa: BLE001 - a scrape reports what it can
            logger.debug("metrics: the store is unreadable: %s", error)
            SCRAPE_ERRORS.labels("database").inc()
        else:
            yield GaugeMetricFamily("lineguard_outbox_messages", "Verdicts and alarms waiting for the relay's sinks", value=depth.messages)
            yield GaugeMetricFamily(
                "lineguard_outbox_oldest_age_seconds", "Age of the oldest waiting outbox message (0: none waits)", value=depth.oldest_age_s or 0.0
            )
            model = GaugeMetricFamily("lineguard_active_model", "The model each line scores with (value 1)", labels=["line", "version"])
            for line, version in sorted(models.items()):
                model.add_metric([line, version], 1)
            yield model


def _queue_metrics(counters: dict) -> Iterator[Metric]:
    yield GaugeMetricFamily("lineguard_queue_jobs", "Jobs waiting in the queue", value=counters["queued_jobs"])
    yield GaugeMetricFamily("lineguard_running_jobs", "Jobs being scored", value=counters["started_jobs"])
    yield GaugeMetricFamily("lineguard_failed_jobs", "Jobs in the failed registry", value=counters["failed_jobs"])
    published = CounterMetricFamily("lineguard_published_frames", "Frames enqueued, by line and camera", labels=["line", "camera"])
    dropped = CounterMetricFamily("lineguard_dropped_frames", "Frames dropped at a full queue, by line and camera", labels=["line", "camera"])
    for stream in counters["streams"]:
        published.add_metric([stream["line"], stream["camera"]], stream["published"])
        dropped.add_metric([stream["line"], stream["camera"]], stream["dropped"])
    refused = CounterMetricFamily("lineguard_refused_jobs", "Foreign jobs workers deleted unrun, by function", labels=["function"])
    for function, count in sorted(counters["refused_jobs"].items()):
        refused.add_metric([function], count)
    yield from (published, dropped, refused)


@contextmanager
def serving_metrics(port: int | None, collector: LineCollector, address: str = "0.0.0.0") -> Iterator[None]:
    """Serve ``/metrics`` on `port` (none when None) for the duration of the block."""
    if port is None:
        yield
        return
    if not 0 < port < 65536:
        raise ValueError(f"--metrics-port must be a port number (1-65535), got {port}")
    REGISTRY.register(collector)
    server, thread = start_http_server(port, addr=address)
    logger.info("metrics on http://%s:%d/metrics", address, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        REGISTRY.unregister(collector)
