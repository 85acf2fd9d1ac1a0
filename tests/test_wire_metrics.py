"""Prometheus endpoints of a worker and an ingester, scraped over HTTP while they run."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest
from line_fixtures import (
    CAMERA,
    LINE,
    line_redis,  # noqa: F401 - fixture
    make_part,
    png,
    register_checkpoint,
    row_count,
    sqlite_line_settings,  # noqa: F401 - fixture
    start_lineguard,
    stop,
    stop_all,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from lineguard.cli import main
from store.db import make_engine

FILES = 6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the endpoint, by name and sorted labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scraped_or_none(port: int) -> dict | None:
    try:
        return scrape(port)
    except OSError:
        return None


@pytest.mark.slow
def test_a_worker_and_an_ingester_expose_what_they_do_and_the_lines_state(
    line_redis, sqlite_line_settings, small_checkpoint, tmp_path  # noqa: F811
):
    engine = make_engine(sqlite_line_settings.database_url)
    processes = []
    try:
        assert main(["db", "upgrade"]) == 0
        version = register_checkpoint(engine, small_checkpoint)
        folder = tmp_path / "incoming"
        folder.mkdir()
        rng = np.random.default_rng(5)
        for i in range(FILES):
            (folder / f"part-{i}.png").write_bytes(png(make_part(rng, defective=i == 0)))
        worker_port, ingest_port = free_port(), free_port()
        processes.append(start_lineguard(
            "worker", "--device", "cpu", "--threads", "1", "--batch-size", "4", "--metrics-port", str(worker_port),
            log_path=tmp_path / "worker.log",
        ))
        processes.append(start_lineguard(
            "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--watch", "--no-progress",
            "--metrics-port", str(ingest_port), log_path=tmp_path / "ingest.log",
        ))
        wait_until(lambda: row_count(engine) == FILES, 90, "a row for every file")

        def worker_counted_all() -> bool:
            samples = scraped_or_none(worker_port)
            return samples is not None and samples.get(("lineguard_capture_to_verdict_seconds_count", ())) == FILES

        wait_until(worker_counted_all, 10, "the worker's metrics to count every frame")
        worker = scrape(worker_port)
        frames = {labels: value for (name, labels), value in worker.items() if name == "lineguard_frames_total"}
        assert sum(frames.values()) == FILES and all(dict(labels)["line"] == LINE for labels in frames)
        assert worker[("lineguard_batch_frames_sum", ())] == FILES
        assert worker[("lineguard_scoring_seconds_count", ())] >= 2
        assert worker[("lineguard_active_model", (("line", LINE), ("version", version)))] == 1
        assert worker[("lineguard_queue_jobs", ())] == 0
        assert worker[("lineguard_outbox_messages", ())] == 0
        ingest = scrape(ingest_port)
        assert ingest[("lineguard_published_frames_total", (("camera", CAMERA), ("line", LINE)))] == FILES
        assert ingest[("lineguard_dropped_frames_total", (("camera", CAMERA), ("line", LINE)))] == 0
        assert stop_all(processes) == [0, 0]
    finally:
        for process in processes:
            stop(process)
        engine.dispose()
