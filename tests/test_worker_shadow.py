"""Shadow mode: a worker also runs a line's shadow candidate, stores its verdicts apart, and the
candidate never gives a frame's verdict. Models are untrained (they score, fast; nothing is judged)."""

from __future__ import annotations

import numpy as np
import pytest
from learning_fixtures import untrained_checkpoint  # noqa: F401 - fixture
from line_fixtures import LINE, QUEUE, line_redis, make_frame, make_part, png, publish, sqlite_engine  # noqa: F401
from rq.job import Job
from rq.serializers import JSONSerializer

from lineguard.registration import register_checkpoint
from model.calibration import Calibration
from model.checkpoint import load_checkpoint, save_recalibrated
from store.artifacts import FileArtifactStore
from store.records import inspections_frame, shadow_agreement, start_shadow, stop_shadow
from wire.protocol import make_queue
from worker.context import WorkerContext
from worker.jobs import score_batch
from worker.model_cache import ModelCache
from worker.shadow import ShadowScorer


def test_the_shadow_candidate_is_scored_and_stored_apart_never_the_verdict(line_redis, sqlite_engine, untrained_checkpoint, tmp_path) -> None:  # noqa: F811
    rng = np.random.default_rng(4)
    images = [make_part(rng, defective=False) for _ in range(8)]
    model = load_checkpoint(untrained_checkpoint, device="cpu")
    raw = sorted(result.raw_score for result in model.score_images(images))
    # Active flags nothing; the shadow candidate (same weights) flags about the top half.
    version = register_checkpoint(sqlite_engine, untrained_checkpoint, LINE)["version"]
    lenient = Calibration(raw[-1] + 1.0, raw[3], 0.01, 0.0, 1.0, 20, "normal")
    strict = Calibration((raw[3] + raw[4]) / 2, raw[3], 0.01, 0.0, 1.0, 20, "normal")
    active_path = save_recalibrated(untrained_checkpoint, lenient, {"test": "active"}, tmp_path / "active.pt")[1]
    shadow_path = save_recalibrated(untrained_checkpoint, strict, {"test": "shadow"}, tmp_path / "shadow.pt")[1]
    active = register_checkpoint(sqlite_engine, active_path, LINE)["version"]
    candidate = register_checkpoint(sqlite_engine, shadow_path)["version"]
    assert version != active
    start_shadow(sqlite_engine, LINE, candidate, by="ana")

    publish(line_redis, [make_frame(png(image), f"part-{i}") for i, image in enumerate(images)], batch_size=8)
    context = WorkerContext(
        redis=line_redis, engine=sqlite_engine, artifacts=FileArtifactStore(tmp_path / "artifacts"),
        models=ModelCache(sqlite_engine, device="cpu"), name="test-worker", batch_size=8, good_sample_every=0,
        shadows=ShadowScorer(sqlite_engine, device="cpu"),
    )
    [job_id] = make_queue(line_redis, QUEUE).job_ids
    score_batch(context, Job.fetch(job_id, connection=line_redis, serializer=JSONSerializer).args[0])

    rows = inspections_frame(sqlite_engine)
    assert len(rows) == 8 and set(rows["verdict"]) == {"good"} and set(rows["model_version"]) == {active}
    agreement = shadow_agreement(sqlite_engine, LINE, candidate)
    assert agreement.frames == 8 and agreement.agreed == 4 and agreement.agreement == pytest.approx(0.5)
    assert {(v.flagged, v.active_flagged) for v in agreement.disagreements} == {(True, False)}

    assert stop_shadow(sqlite_engine, LINE) and not stop_shadow(sqlite_engine, LINE)
