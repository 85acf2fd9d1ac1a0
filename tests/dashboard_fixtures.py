"""A small populated store for the dashboard's tests: inspections, images, models, reviews and queue health.

Import the fixtures into a test module (``from dashboard_fixtures import populated, dashboard_env, ...``).
Times are relative to the real clock, since the live page shows windows ending now.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from ci_requirements import requirement_missing
from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from ingest import Frame, Publisher, new_frame_id
from wire.protocol import make_queue
from model.synthetic import defective_part
from server_urls import redis_test_url
from store import (
    FileArtifactStore,
    InspectionRecord,
    activate_model,
    inspections_frame,
    make_engine,
    register_model,
    save_review,
    upgrade,
    write_inspections,
)

#: Redis database the dashboard's tests own; flushed before and after each test that uses it.
REDIS_TEST_URL = redis_test_url(12)
IMAGE_SIZE = 128
#: Line -> (model version, random teacher).
LINE_MODELS = {"line-a": ("ts-imagenet-1", False), "line-b": ("ts-random-1", True)}
CAMERAS = ("cam-1", "cam-2")
#: One frame every this many seconds per camera, over the last RECENT_MINUTES.
FRAME_INTERVAL_S = 30
RECENT_MINUTES = 30
#: Every n-th recent frame of a stream is flagged: line-b/cam-2 far above any sensible alarm level.
FLAG_EVERY = {("line-a", "cam-1"): 20, ("line-a", "cam-2"): 20, ("line-b", "cam-1"): 20, ("line-b", "cam-2"): 3}
#: Flagged frames two days old, of which the first REVIEWED_OLD are reviewed (alternately confirmed).
OLD_FLAGGED = 6
REVIEWED_OLD = 4


@dataclass(frozen=True)
class Populated:
    """What :func:`populate` wrote."""

    database_url: str
    artifacts_root: Path
    #: Flagged, unreviewed inspection ids, newest first (the review queue's order).
    queue_ids: tuple[int, ...]
    #: Scored recent frames and flagged ones per (line, camera).
    recent_frames: dict[tuple[str, str], int]
    recent_flagged: dict[tuple[str, str], int]


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB image with a jet heatmap of the blurred (H,W) bool mask blended over it."""
    heat = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 6)
    heat = (255 * heat / max(float(heat.max()), 1e-6)).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 0.5, coloured, 0.5, 0)


def jpeg(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def report_pictures(artifacts: FileArtifactStore, version: str) -> dict:
    """The report fields `lineguard models add` records for a model evaluated with `--report`: its
    folder and its pictures, stored (two plain PNGs here) under the keys it uses."""
    pictures = {}
    for title, name in (("ROC curves", "roc_curves.png"), ("Score histogram", "score_histogram.png")):
        key = f"models/{version}/report/{name}"
        artifacts.put(key, cv2.imencode(".png", np.full((60, 80, 3), 200, np.uint8))[1].tobytes())
        pictures[title] = key
    return {"report": f"/reports/{version}", "report_pictures": pictures}


def populate(database_url: str, artifacts_root: Path, now: datetime, seed: int = 0) -> Populated:
    """Models, inspections of the last half hour and of two days ago, images of flagged parts, a few reviews."""
    engine = make_engine(database_url)
    artifacts = FileArtifactStore(artifacts_root)
    rng = np.random.default_rng(seed)
    try:
        upgrade(engine)
        for line, (version, random_teacher) in LINE_MODELS.items():
            register_model(
                engine,
                version=version,
                checkpoint_path=f"/models/{version}.pt",
                recipe={"backbone": "vgg16", "image_size": IMAGE_SIZE, "input_shape": [IMAGE_SIZE, IMAGE_SIZE], "pixel_scale": None}
                if not random_teacher
                # The random-teacher model is a texture's: tiles and levelling chosen from its training images.
                else {"backbone": "vgg16", "image_size": IMAGE_SIZE, "pixel_scale": 1.0, "lighting": "levelled", "input_shape": [IMAGE_SIZE, IMAGE_SIZE]},
                calibration={"threshold": 2.5, "false_reject_rate": 0.01, "n_images": 12},
                metrics={"image_auroc": 0.55 if random_teacher else 0.97, "pixel_auroc": 0.9, **report_pictures(artifacts, version)},
                teacher_source="random" if random_teacher else "file:vgg16_imagenet_features.pth",
                random_teacher=random_teacher,
                training_data={"images": 48, "data_choices": {"chosen": {"pixel_scale": 1.0, "lighting": "levelled"} if random_teacher else {}}},
            )
            activate_model(engine, line, version)
        records: list[InspectionRecord] = []
        recent_frames: dict[tuple[str, str], int] = {}
        recent_flagged: dict[tuple[str, str], int] = {}
        for line, (version, random_teacher) in LINE_MODELS.items():
            for camera in CAMERAS:
                steps = RECENT_MINUTES * 60 // FRAME_INTERVAL_S
                for step in range(steps):
                    finished = now - timedelta(seconds=FRAME_INTERVAL_S * (steps - step) - 1)
                    flagged = step % FLAG_EVERY[line, camera] == 0
                    records.append(_record(artifacts, rng, line, camera, version, random_teacher, finished, flagged))
                recent_frames[line, camera] = steps
                recent_flagged[line, camera] = len(range(0, steps, FLAG_EVERY[line, camera]))
        old = [
            _record(artifacts, rng, "line-a", "cam-1", "ts-imagenet-1", False, now - timedelta(days=2, minutes=i), True)
            for i in range(OLD_FLAGGED)
        ]
        write_inspections(engine, [*records, *old])
        ids = inspections_frame(engine).set_index("frame_id")["id"]
        for index, record in enumerate(old[:REVIEWED_OLD]):
            verdict = "confirmed" if index % 2 == 0 else "false_alarm"
            save_review(engine, int(ids[record.frame_id]), verdict, None, "earlier shift")
        reviewed = {int(ids[record.frame_id]) for record in old[:REVIEWED_OLD]}
        flagged_newest_first = sorted(
            (record for record in [*records, *old] if record.verdict == "defect"),
            key=lambda record: (record.finished_at, ids[record.frame_id]),
            reverse=True,
        )
        queue_ids = tuple(
            int(ids[record.frame_id]) for record in flagged_newest_first if int(ids[record.frame_id]) not in reviewed
        )
    finally:
        engine.dispose()
    return Populated(database_url, artifacts_root, queue_ids, recent_frames, recent_flagged)


def _record(
    artifacts: FileArtifactStore,
    rng: np.random.Generator,
    line: str,
    camera: str,
    version: str,
    random_teacher: bool,
    finished: datetime,
    flagged: bool,
) -> InspectionRecord:
    frame_id = new_frame_id()
    image_key = heatmap_key = None
    if flagged:
        image, mask = defective_part(IMAGE_SIZE, rng)
        image_key = artifacts.put(f"{line}/{camera}/{frame_id}.image.jpg", jpeg(image))
        heatmap_key = artifacts.put(f"{line}/{camera}/{frame_id}.heatmap.jpg", jpeg(overlay(image, mask)))
    score = float(rng.uniform(0.55, 0.99) if flagged else rng.uniform(0.05, 0.45))
    return InspectionRecord(
        frame_id=frame_id,
        line=line,
        camera=camera,
        source=f"folder:/plant/{line}/{camera}",
        captured_at=finished - timedelta(milliseconds=400),
        enqueued_at=finished - timedelta(milliseconds=350),
        started_at=finished - timedelta(milliseconds=100),
        finished_at=finished,
        verdict="defect" if flagged else "good",
        model_version=version,
        score=score,
        raw_score=2.5 + float(np.log(score / (1 - score))),
        threshold=2.5,
        image_key=image_key,
        heatmap_key=heatmap_key,
        worker="worker-1",
        random_teacher=random_teacher,
        origin=f"shift-2/{frame_id}.png",
    )


@pytest.fixture
def populated(tmp_path: Path) -> Populated:
    """A populated SQLite store and artifact folder under tmp_path."""
    return populate(f"sqlite:///{tmp_path / 'lineguard.db'}", tmp_path / "artifacts", datetime.now(UTC))


@pytest.fixture
def redis_db() -> Iterator[Redis]:
    """The dashboard tests' Redis database, empty at the start and flushed after."""
    redis = Redis.from_url(REDIS_TEST_URL)
    try:
        redis.ping()
    except Exception as error:  # any connection failure means the same: no Redis to test with
        requirement_missing(f"Redis at {REDIS_TEST_URL} is unreachable: {error}")
    redis.flushdb()
    try:
        yield redis
    finally:
        redis.flushdb()
        redis.close()


def fill_queue(redis: Redis, queue_name: str) -> Worker:
    """Publish 4 frames (2 jobs) and drop 3 more at the full queue; register one live worker on the queue."""
    with Publisher(redis, queue_name=queue_name, batch_size=2, max_queued_jobs=2, policy="drop") as publisher:
        for index in range(7):
            frame = Frame(new_frame_id(), "line-a", "cam-1", "test", datetime.now(UTC), b"jpeg", str(index))
            publisher.publish(frame)
    worker = Worker([make_queue(redis, queue_name)], connection=redis, serializer=JSONSerializer, name="dashboard-test-worker")
    worker.register_birth()
    worker.set_state(WorkerStatus.IDLE)
    return worker


@pytest.fixture
def dashboard_env(populated: Populated, redis_db: Redis, monkeypatch: pytest.MonkeyPatch) -> Populated:
    """The environment a dashboard process reads, pointing at the populated store and the test Redis."""
    monkeypatch.setenv("DATABASE_URL", populated.database_url)
    monkeypatch.setenv("LINEGUARD_ARTIFACTS", str(populated.artifacts_root))
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("LINEGUARD_QUEUE", "dashboard-test")
    monkeypatch.setenv("LINEGUARD_ALARM_RATE", "0.2")
    monkeypatch.setenv("LINEGUARD_REVIEWER", "test reviewer")
    monkeypatch.delenv("LINEGUARD_DASHBOARD_PASSWORD", raising=False)
    return populated
