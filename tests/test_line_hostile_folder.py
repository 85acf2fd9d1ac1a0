"""Issue 8's hostile folder, end to end: the real `lineguard ingest folder` under a memory cap, then a worker.

The folder holds what a careless or hostile writer can put there: a FIFO named x.png, symlinks to
/etc/passwd, /dev/zero and a file outside the folder, a socket, a sparse file far over the size
limit, a 20000x20000 JPEG bomb, GIF and WebP files, a 1x1 image and good parts. The ingester must
finish, open none of the special files, and count and record every skip with its reason; every
file it takes must end as exactly one row (the bomb and the 1x1 image as error rows).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hostile_fixtures import HostileFolder, OpenWatch, memory_capped, write_hostile_folder
from line_fixtures import (
    CAMERA,
    LINE,
    QUEUE,
    REPO_ROOT,
    line_redis,  # noqa: F401 - fixture
    make_part,
    register_checkpoint,
    sqlite_line_settings,  # noqa: F401 - fixture
)
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from ingest.publisher import make_queue
from lineguard.settings import Settings
from store.db import make_engine
from store.records import inspections_frame, recent_source_events

pytestmark = pytest.mark.slow

#: Address-space caps: generous for what each process needs (the ingester about 0.9 GiB, a
#: worker with torch about 5 GiB), far below the machine's memory, and below what reading
#: /dev/zero or the sparse file would take.
INGESTER_CAP_BYTES = 2 * 2**30
WORKER_CAP_BYTES = 8 * 2**30
#: The size limit of the run, and the sparse file far over it.
LIMIT_MB = 8
SPARSE_BYTES = 16 * 2**30
GOOD_PARTS = 4
TIMEOUT_S = 300


@pytest.fixture
def hostile(tmp_path: Path) -> HostileFolder:
    rng = np.random.default_rng(11)
    parts = [make_part(rng, defective=False) for _ in range(GOOD_PARTS + 1)]
    return write_hostile_folder(tmp_path / "incoming", tmp_path / "outside", parts, SPARSE_BYTES)


class FifoReaderProbe:
    """Tries, all along, to open the FIFO's writing end without blocking: that succeeds only while a reader has it open."""

    def __init__(self, fifo: Path) -> None:
        self._fifo = fifo
        self._stop = threading.Event()
        self.attempts = 0
        self.reader_seen = False
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        while not self._stop.is_set():
            try:
                os.close(os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK))
                self.reader_seen = True
            except OSError as error:
                assert error.errno == errno.ENXIO, error  # ENXIO: no reader
            self.attempts += 1
            self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def lineguard(*argv: str, cap_bytes: int) -> subprocess.CompletedProcess[str]:
    """`lineguard ARGV...` in a subprocess under an address-space cap; its output is returned."""
    return subprocess.run(
        [sys.executable, "-m", "lineguard.cli", *argv],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO_ROOT, preexec_fn=memory_capped(cap_bytes),
    )


def test_the_ingester_finishes_opens_no_special_file_and_every_taken_file_ends_as_one_row(
    hostile: HostileFolder, sqlite_line_settings: Settings, line_redis: Redis, small_checkpoint: Path  # noqa: F811
) -> None:
    upgraded = lineguard("db", "upgrade", cap_bytes=INGESTER_CAP_BYTES)  # ingesters only check the schema
    assert upgraded.returncode == 0, upgraded.stderr
    watch = OpenWatch([hostile.folder, hostile.outside])
    probe = FifoReaderProbe(hostile.folder / "x.png")
    try:
        ingested = lineguard(
            "ingest", "folder", str(hostile.folder), "--line", LINE, "--camera", CAMERA, "--max-file-mb", str(LIMIT_MB),
            "--no-progress", cap_bytes=INGESTER_CAP_BYTES,
        )
    finally:
        probe.stop()
        opened = watch.read()
        watch.close()
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    print(ingested.stdout.strip().splitlines()[-1])
    # Nothing but the taken files (a link through its target) was opened, in the folder or outside it.
    assert opened == {hostile.folder / hostile.opened_as.get(name, name) for name in hostile.taken}
    assert probe.attempts > 0 and not probe.reader_seen
    reasons = Counter(hostile.skipped.values())
    assert f"{len(hostile.taken)} published" in ingested.stdout
    assert (
        f"{len(hostile.skipped)} skipped ({reasons['kind']} kind, {reasons['size']} size, {reasons['extension']} extension)"
        in ingested.stdout
    )

    engine = make_engine(sqlite_line_settings.database_url)
    try:
        events = [event for event in recent_source_events(engine) if event.kind.startswith("skipped:")]
        assert {Path(event.message.split(": ", 1)[0]).name: event.kind for event in events} == {
            name: f"skipped:{reason}" for name, reason in hostile.skipped.items()
        }
        register_checkpoint(engine, small_checkpoint)
    finally:
        engine.dispose()

    status = lineguard("status", "--json", cap_bytes=INGESTER_CAP_BYTES)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lines"][LINE]["skipped_files"] == {CAMERA: dict(sorted(reasons.items()))}
    text = lineguard("status", cap_bytes=INGESTER_CAP_BYTES).stdout
    assert f"{LINE}/{CAMERA}: files skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) in text

    queued = queued_origins(line_redis)
    assert sorted(queued.values()) == sorted(hostile.taken)

    worked = lineguard("worker", "--burst", "--device", "cpu", cap_bytes=WORKER_CAP_BYTES)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        rows = inspections_frame(engine)
    finally:
        engine.dispose()
    assert rows["frame_id"].is_unique and set(rows["frame_id"]) == set(queued)  # exactly one row per file taken
    verdicts = {queued[row.frame_id]: (row.verdict, row.error) for row in rows.itertuples()}
    assert verdicts["bomb.jpg"][0] == "error" and "JPEG of 20000x20000 exceeds" in verdicts["bomb.jpg"][1]
    assert verdicts["tiny.png"][0] == "error" and "PNG of 1x1 is smaller than 32 px" in verdicts["tiny.png"][1]
    scored = hostile.taken - {"bomb.jpg", "tiny.png"}
    assert {origin: verdict for origin, (verdict, _) in verdicts.items() if origin in scored} == dict.fromkeys(scored, "good")


def queued_origins(redis: Redis) -> dict[str, str]:
    """frame id -> origin of every frame in the test queue's jobs."""
    origins = {}
    for job_id in make_queue(redis, QUEUE).job_ids:
        for frame in Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args[0]["frames"]:
            origins[frame["frame_id"]] = frame["origin"]
    return origins
