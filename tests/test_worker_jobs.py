"""The job function: frames from Redis in, one row per frame out, bad frames as error rows.

The tests of what depends on the database (rows, upserts) run on SQLite and PostgreSQL; the rest on SQLite.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from export_fixtures import small_onnx_export  # noqa: F401 - fixture
from hostile_fixtures import jpeg_bomb
from line_fixtures import (
    LINE,
    QUEUE,
    line_redis,  # noqa: F401 - fixture
    make_frame,
    make_part,
    png,
    publish,
    register_checkpoint,
    sqlite_engine,  # noqa: F401 - fixture
)
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine
from store_fixtures import db_url, postgres_run_database, store_engine  # noqa: F401 - fixtures

from ingest.frames import FileReference
from wire.protocol import frame_key, make_queue
from model.checkpoint import load_checkpoint, save_checkpoint
from model.images import MIN_SIDE, decode_image
from store.artifacts import FileArtifactStore
from store.records import activate_model, inspections_frame, register_model
from worker.context import WorkerContext, installed
from worker.errors import NoWorkerContextError
from worker import jobs as worker_jobs
from worker.jobs import EXPIRED_REASON, SCORING_BYTES_PER_IMAGE_BYTE, UNRECORDABLE_REASON, score_batch, score_frames
from worker.model_cache import ModelCache
from worker.device_decoding import DeviceDecoding
from worker.references import frame_root


class StepClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_context(redis: Redis, engine: Engine, tmp_path: Path, **changes: object) -> WorkerContext:
    context = WorkerContext(
        redis=redis,
        engine=engine,
        artifacts=FileArtifactStore(tmp_path / "artifacts"),
        models=ModelCache(engine, device="cpu"),
        name="test-worker",
        batch_size=8,
        good_sample_every=0,
    )
    return replace(context, **changes)


def queued_payloads(redis: Redis) -> list[dict]:
    queue = make_queue(redis, QUEUE)
    return [Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args[0] for job_id in queue.job_ids]


def rows_by_origin(engine: Engine, frames) -> dict[str, dict]:
    origin_of = {frame.frame_id: frame.origin for frame in frames}
    table = inspections_frame(engine)
    table = table.astype(object).where(table.notna(), None)  # pandas reads NULL as NaN
    return {origin_of[row["frame_id"]]: row for row in table.to_dict("records") if row["frame_id"] in origin_of}


def test_n_frames_in_n_rows_out_with_the_right_verdicts(line_redis, store_engine, small_checkpoint, tmp_path):  # noqa: F811
    version = register_checkpoint(store_engine, small_checkpoint)
    rng = np.random.default_rng(3)
    frames = [make_frame(png(make_part(rng, defective=i % 3 == 0)), f"{'defective' if i % 3 == 0 else 'good'}-{i}") for i in range(12)]
    publish(line_redis, frames, batch_size=5)
    context = make_context(line_redis, store_engine, tmp_path, batch_size=4)

    outcomes = [score_batch(context, payload) for payload in queued_payloads(line_redis)]

    assert [outcome.frames for outcome in outcomes] == [5, 5, 2]
    rows = rows_by_origin(store_engine, frames)
    assert len(rows) == len(frames)
    for origin, row in rows.items():
        expected = "defect" if origin.startswith("defective") else "good"
        assert row["verdict"] == expected, (origin, row["score"])
        assert (row["score"] >= 0.5) == (expected == "defect")
        assert row["model_version"] == version and row["worker"] == "test-worker" and row["error"] is None
        assert row["captured_at"] <= row["enqueued_at"] <= row["started_at"] <= row["finished_at"]
        # Flagged frames keep their picture and heatmap; good ones are not sampled here.
        if expected == "defect":
            for key in (row["image_key"], row["heatmap_key"]):
                picture = cv2.imread(str(tmp_path / "artifacts" / key))
                assert picture is not None and picture.shape == (128, 128, 3)
        else:
            assert row["image_key"] is None and row["heatmap_key"] is None
    assert not any(line_redis.exists(frame_key(frame.frame_id)) for frame in frames)


def test_bad_frames_become_error_rows_and_the_rest_of_the_batch_is_scored(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(4)
    part = make_part(rng, defective=False)
    good = png(part)
    huge_header = good[:16] + (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big") + good[24:]
    files = {
        "good": good,
        "corrupt": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
        "empty": b"",
        "truncated": good[: len(good) // 3],
        "huge": huge_header,
        "gray": png(cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)),
        "gray16": png(cv2.cvtColor(part, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257),
        "rgba": png(np.dstack([cv2.cvtColor(part, cv2.COLOR_RGB2BGR), np.full(part.shape[:2], 255, np.uint8)])),
        "bgr16": png(part.astype(np.uint16) * 257),  # png() writes RGB arrays in BGR order
        "expired": good,
    }
    frames = [make_frame(data, origin) for origin, data in files.items()]
    publish(line_redis, frames, batch_size=len(frames))
    # Its TTL ran out before a worker took it: the bytes are gone and the job says they expired.
    line_redis.delete(frame_key(frames[-1].frame_id))
    payload = queued_payloads(line_redis)[0]
    payload["frames"][-1]["expires_at"] = payload["frames"][-1]["enqueued_at"]

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path), payload)

    rows = rows_by_origin(sqlite_engine, frames)
    assert set(rows) == set(files)
    # Copies with the same colour pixels score as the original; gray copies are scored too (one
    # score for 8 and 16 bits), though whether a gray version of a colour part is good is the model's call.
    assert rows["good"]["verdict"] == "good", rows["good"]["error"]
    for origin in ("rgba", "bgr16"):
        assert rows[origin]["verdict"] == "good", (origin, rows[origin]["error"])
        assert rows[origin]["raw_score"] == pytest.approx(rows["good"]["raw_score"], rel=1e-4)
    for origin in ("gray", "gray16"):
        assert rows[origin]["error"] is None and rows[origin]["verdict"] in ("good", "defect")
    assert rows["gray16"]["raw_score"] == pytest.approx(rows["gray"]["raw_score"], rel=1e-4)
    assert "empty file" in rows["empty"]["error"]
    assert "exceeds" in rows["huge"]["error"]
    for origin in ("corrupt", "truncated"):
        assert "not a decodable image" in rows[origin]["error"]
    assert rows["expired"]["error"].startswith(EXPIRED_REASON)
    for origin in ("empty", "huge", "corrupt", "truncated", "expired"):
        assert rows[origin]["verdict"] == "error" and rows[origin]["score"] is None
        assert rows[origin]["frame_id"] in rows[origin]["error"]
    assert (outcome.scored, outcome.errors) == (5, 5)


def test_a_tiny_frame_a_bomb_and_a_foreign_format_get_error_rows_not_verdicts(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    part = make_part(np.random.default_rng(7), defective=False)
    files = {
        "good": png(part),
        "one-pixel": png(part[:1, :1]),
        "thin": png(part[:MIN_SIDE - 1]),
        # Just over the limit: were it decoded in this uncapped process, it would cost 200 MB, not 1.2 GB
        # (the 20000x20000 bomb goes through a capped worker in test_line_hostile_folder).
        "bomb": jpeg_bomb(side=8100, noise_side=64),
        "gif": b"GIF89a" + png(part)[6:],
    }
    frames = [make_frame(data, origin) for origin, data in files.items()]
    publish(line_redis, frames, batch_size=len(frames))

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path), queued_payloads(line_redis)[0])

    rows = rows_by_origin(sqlite_engine, frames)
    assert rows["good"]["verdict"] == "good"
    assert f"smaller than {MIN_SIDE} px" in rows["one-pixel"]["error"] and "PNG of 1x1" in rows["one-pixel"]["error"]
    assert f"smaller than {MIN_SIDE} px" in rows["thin"]["error"]
    assert "JPEG of 8100x8100 exceeds" in rows["bomb"]["error"]
    assert "not one of the accepted formats" in rows["gif"]["error"]
    for origin in ("one-pixel", "thin", "bomb", "gif"):
        assert rows[origin]["verdict"] == "error" and rows[origin]["score"] is None
    assert (outcome.scored, outcome.errors) == (1, 4)


def test_bytes_lost_with_redis_before_their_expiry_get_no_error_row(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    """A frame is not bad because Redis forgot it: no row, so its source's ledger sends it again."""
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(8)
    frames = [make_frame(png(make_part(rng, False)), origin) for origin in ("kept", "forgotten")]
    publish(line_redis, frames, batch_size=2)
    line_redis.delete(frame_key(frames[1].frame_id))  # long before its one-hour TTL

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path), queued_payloads(line_redis)[0])

    assert set(rows_by_origin(sqlite_engine, frames)) == {"kept"}
    assert (outcome.scored, outcome.errors, outcome.lost_with_redis) == (1, 0, 1)


def test_frames_sent_by_reference_are_read_inside_the_frame_root_and_scored_like_bytes(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(9)
    root = tmp_path / "shared"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(png(make_part(rng, False)))
    files = {"good": png(make_part(rng, False)), "defective": png(make_part(rng, True)), "rewritten": png(make_part(rng, False))}
    for name, data in files.items():
        (root / f"{name}.png").write_bytes(data)
    frames = [replace(make_frame(b"", name), reference=FileReference(str(root / f"{name}.png"), len(data))) for name, data in files.items()]
    outside = str(root / ".." / "secret.png")
    frames.append(replace(make_frame(b"", "traversal"), reference=FileReference(outside, (tmp_path / "secret.png").stat().st_size)))
    (root / "rewritten.png").write_bytes(files["rewritten"] + b"appended")
    publish(line_redis, frames, batch_size=len(frames))

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path, frame_root=frame_root(root)), queued_payloads(line_redis)[0])

    rows = rows_by_origin(sqlite_engine, frames)
    assert (rows["good"]["verdict"], rows["defective"]["verdict"]) == ("good", "defect")
    assert "rewritten since" in rows["rewritten"]["error"]
    assert "not an absolute, normal path" in rows["traversal"]["error"] and rows["traversal"]["verdict"] == "error"
    assert (outcome.scored, outcome.errors) == (2, 2)
    assert not any(line_redis.exists(frame_key(frame.frame_id)) for frame in frames)
    assert all((root / f"{name}.png").exists() for name in files)  # the files are the source's, never deleted


def test_a_worker_without_a_frame_root_records_frames_sent_by_reference_as_errors(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    data = png(make_part(np.random.default_rng(10), False))
    (tmp_path / "part.png").write_bytes(data)
    frames = [replace(make_frame(b"", "part"), reference=FileReference(str(tmp_path / "part.png"), len(data)))]
    publish(line_redis, frames, batch_size=1)

    score_batch(make_context(line_redis, sqlite_engine, tmp_path), queued_payloads(line_redis)[0])

    assert "no --frame-root" in rows_by_origin(sqlite_engine, frames)["part"]["error"]


def test_a_line_without_an_active_model_gets_error_rows_not_a_crash(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(5)
    frames = [make_frame(png(make_part(rng, False)), "scored"), make_frame(png(make_part(rng, False)), "orphan", line="line-9")]
    publish(line_redis, frames, batch_size=2)

    score_batch(make_context(line_redis, sqlite_engine, tmp_path), queued_payloads(line_redis)[0])

    rows = rows_by_origin(sqlite_engine, frames)
    assert rows["scored"]["verdict"] == "good"
    assert rows["orphan"]["verdict"] == "error" and "no active model for line line-9" in rows["orphan"]["error"]


def test_a_retried_batch_keeps_one_row_per_frame_and_its_verdicts(line_redis, store_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(store_engine, small_checkpoint)
    rng = np.random.default_rng(6)
    frames = [make_frame(png(make_part(rng, defective=i == 0)), f"part-{i}") for i in range(4)]
    publish(line_redis, frames, batch_size=4)
    payload = queued_payloads(line_redis)[0]
    context = make_context(line_redis, store_engine, tmp_path)
    score_batch(context, payload)
    first = inspections_frame(store_engine).set_index("frame_id")

    # The worker died after writing the rows and deleting the bytes, before rq marked the job done.
    outcome = score_batch(context, payload)

    again = inspections_frame(store_engine).set_index("frame_id")
    assert outcome.already_recorded == 4 and outcome.errors == 0
    assert len(again) == 4
    assert (again["verdict"] == first["verdict"]).all() and again["error"].isna().all()


def test_a_sample_of_good_frames_keeps_pictures(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(7)
    frames = [make_frame(png(make_part(rng, False)), f"good-{i}") for i in range(3)]
    publish(line_redis, frames, batch_size=3)

    score_batch(make_context(line_redis, sqlite_engine, tmp_path, good_sample_every=1), queued_payloads(line_redis)[0])

    table = inspections_frame(sqlite_engine)
    assert (table["verdict"] == "good").all()
    assert all((tmp_path / "artifacts" / key).is_file() for key in table["heatmap_key"])


def test_each_camera_keeps_the_pictures_of_one_good_frame_in_n_of_its_own(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    """A camera that sends few parts is sampled as often as a busy one: 7 good frames of cam-1 keep
    3 pictures at one in 3 (the 1st, 4th, 7th), 2 of cam-2 keep 1, across two batches."""
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(8)
    frames = [replace(make_frame(png(make_part(rng, False)), f"{camera}-{i}"), camera=camera) for camera, n in (("cam-1", 7), ("cam-2", 2)) for i in range(n)]
    frames = [frames[i] for i in (0, 7, 1, 2, 3, 8, 4, 5, 6)]  # interleaved, in order within each camera
    publish(line_redis, frames, batch_size=5)
    context = make_context(line_redis, sqlite_engine, tmp_path, good_sample_every=3)
    for payload in queued_payloads(line_redis):
        score_batch(context, payload)

    rows = rows_by_origin(sqlite_engine, frames)
    assert all(row["verdict"] == "good" for row in rows.values())
    kept = sorted(origin for origin, row in rows.items() if row["image_key"])
    assert kept == ["cam-1-0", "cam-1-3", "cam-1-6", "cam-2-0"]
    assert all((tmp_path / "artifacts" / rows[origin]["image_key"]).is_file() for origin in kept)


def test_a_new_active_model_is_used_after_the_refresh_without_a_restart(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    first_version = register_checkpoint(sqlite_engine, small_checkpoint)
    # A second model: the same network nudged (a new version) and calibrated to flag every part.
    strict = load_checkpoint(small_checkpoint, device="cpu")
    with torch.no_grad():
        next(strict.network.student.parameters()).add_(1e-4)
    calibration = replace(strict.calibration, threshold=-1e6, median_good=-1e6 - 1.0)
    strict_path = tmp_path / "strict.pt"
    strict_version = save_checkpoint(strict_path, strict.network, calibration, strict.teacher_source, {"note": "test"})
    register_model(
        sqlite_engine, version=strict_version, checkpoint_path=str(strict_path), recipe={}, calibration=calibration.to_dict(),
        metrics=None, teacher_source=strict.teacher_source, random_teacher=False, training_data={},
    )
    clock = StepClock()
    context = make_context(line_redis, sqlite_engine, tmp_path, models=ModelCache(sqlite_engine, device="cpu", refresh_s=5.0, clock=clock))
    rng = np.random.default_rng(8)

    def score_one(origin: str) -> dict:
        frame = make_frame(png(make_part(rng, False)), origin)
        publish(line_redis, [frame], batch_size=1)
        score_batch(context, queued_payloads(line_redis)[-1])
        return rows_by_origin(sqlite_engine, [frame])[origin]

    assert score_one("before")["model_version"] == first_version
    activate_model(sqlite_engine, LINE, strict_version)
    clock.now += 1.0
    assert score_one("within the refresh time")["model_version"] == first_version
    clock.now += 5.0
    after = score_one("after the refresh")
    assert after["model_version"] == strict_version and after["verdict"] == "defect"
    assert context.models.loaded_versions == [strict_version]


def test_the_job_function_needs_a_worker_context(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    frame = make_frame(png(make_part(np.random.default_rng(9), False)), "only")
    publish(line_redis, [frame], batch_size=1)
    payload = queued_payloads(line_redis)[0]
    with pytest.raises(NoWorkerContextError, match="lineguard worker"):
        score_frames(payload)

    with installed(make_context(line_redis, sqlite_engine, tmp_path)):
        assert score_frames(payload)["scored"] == 1


def test_a_malformed_entry_is_recorded_when_it_can_be(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    frame = make_frame(png(make_part(np.random.default_rng(10), False)), "fine")
    publish(line_redis, [frame], batch_size=1)
    payload = queued_payloads(line_redis)[0]
    broken = {**payload["frames"][0], "frame_id": "f" * 32, "captured_at": "yesterday"}
    payload["frames"] += [broken, {"what": "no id at all"}]

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path), payload)

    table = inspections_frame(sqlite_engine).set_index("frame_id")
    assert table.loc[frame.frame_id, "verdict"] == "good"
    assert table.loc["f" * 32, "verdict"] == "error" and "captured_at" in table.loc["f" * 32, "error"]
    assert outcome.unrecordable == 1
    with pytest.raises(TypeError, match="frames"):
        score_batch(make_context(line_redis, sqlite_engine, tmp_path), {"frame": []})


def test_a_result_that_makes_no_valid_row_gets_its_own_error_row(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    """An origin longer than its column (a deep --recursive path) fails its own frame, not the batch."""
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(5)
    deep = "/".join(["deeper"] * 200) + "/part.png"  # 1,408 characters; the column holds 1,024
    frames = [make_frame(png(make_part(rng, defective=False)), origin) for origin in ("first", deep, "last")]
    publish(line_redis, frames, batch_size=len(frames))

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path), queued_payloads(line_redis)[0])

    assert (outcome.frames, outcome.scored, outcome.errors) == (3, 2, 1)
    table = inspections_frame(sqlite_engine).set_index("frame_id")
    bad = table.loc[frames[1].frame_id]
    assert bad["verdict"] == "error" and bad["error"].startswith(f"{UNRECORDABLE_REASON}: ") and "origin has 1408 characters" in bad["error"]
    assert len(bad["origin"]) == 1024 and bad["origin"].endswith("…")
    assert list(table.loc[[frames[0].frame_id, frames[2].frame_id], "verdict"]) == ["good", "good"]


def test_a_batch_of_large_frames_is_decoded_a_few_at_a_time_within_the_budget(line_redis, sqlite_engine, small_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    """Five 3,000 x 2,400 frames in one job: each is cut to MAX_FRAME_SIDE as soon as it is decoded,
    and they are scored in chunks whose pixels and maps fit the decode budget, not all at once."""
    register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(27)
    large = [cv2.resize(make_part(rng, defective=False), (3000, 2400), interpolation=cv2.INTER_LINEAR) for _ in range(5)]
    frames = [make_frame(png(image), f"large-{i}") for i, image in enumerate(large)]
    publish(line_redis, frames, batch_size=len(frames))
    cut_bytes = 2048 * round(2400 * 2048 / 3000) * 3  # one frame after the cut
    budget = int(2.5 * cut_bytes * SCORING_BYTES_PER_IMAGE_BYTE)  # room for two cut frames, not three
    chunks: list[list[tuple[int, ...]]] = []
    scored_chunk = worker_jobs._score_chunk

    def spy(context, images_by_line, *args):  # noqa: ANN001, ANN202 - the chunks as scored
        chunks.append([image.shape for items in images_by_line.values() for _, image in items])
        return scored_chunk(context, images_by_line, *args)

    monkeypatch.setattr(worker_jobs, "_score_chunk", spy)

    outcome = score_batch(make_context(line_redis, sqlite_engine, tmp_path, decode_budget_bytes=budget), queued_payloads(line_redis)[0])

    assert (outcome.frames, outcome.scored, outcome.errors) == (5, 5, 0)
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
    assert all(shape == (round(2400 * 2048 / 3000), 2048, 3) for chunk in chunks for shape in chunk)
    assert (inspections_frame(sqlite_engine)["verdict"] != "error").all()


def test_a_registered_export_is_scored_by_its_runtime(line_redis, sqlite_engine, small_checkpoint, small_onnx_export, tmp_path):  # noqa: F811
    version = register_checkpoint(sqlite_engine, small_onnx_export)
    rng = np.random.default_rng(5)
    frames = [make_frame(png(make_part(rng, defective=i % 2 == 0)), f"{'defective' if i % 2 == 0 else 'good'}-{i}") for i in range(4)]
    publish(line_redis, frames, batch_size=4)
    context = make_context(line_redis, sqlite_engine, tmp_path)

    for payload in queued_payloads(line_redis):
        score_batch(context, payload)

    assert context.models.model_for_line(LINE).runtime.name == "onnxruntime"
    rows = rows_by_origin(sqlite_engine, frames)
    torch_model = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    expected = torch_model.score_images([decode_image(frame.data) for frame in frames])
    for frame, want in zip(frames, expected):
        row = rows[frame.origin]
        assert row["model_version"] == version and version.endswith("-onnx-fp32")
        assert row["raw_score"] == pytest.approx(want.raw_score, rel=1e-3)
        assert row["verdict"] == ("defect" if frame.origin.startswith("defective") else "good")


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_frames_decoded_on_the_device_are_measured_against_the_host_then_scored_there(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    """The CUDA path's code on the CPU (device "cpu"): the first frames of a model are scored both ways,
    then the device's decoding is trusted and scores frames alone, with the host's verdicts."""
    version = register_checkpoint(sqlite_engine, small_checkpoint)
    rng = np.random.default_rng(11)
    parts = {f"{kind}-{i}": make_part(rng, kind == "defective") for i in range(6) for kind in ("good", "defective")}
    files = {name: jpeg(part) for name, part in parts.items()} | {"png": png(parts["good-0"]), "corrupt": jpeg(parts["good-1"])[:300]}
    frames = [make_frame(data, origin) for origin, data in files.items()]
    decoding = DeviceDecoding(torch.device("cpu"), check_frames=8)
    context = make_context(line_redis, sqlite_engine, tmp_path, device_decoding=decoding, batch_size=8)
    host_scores = load_checkpoint(small_checkpoint, device="cpu", precision="fp32").raw_scores([decode_image(files[f.origin]) for f in frames[:-1]])
    publish(line_redis, frames, batch_size=len(frames))

    outcome = score_batch(context, queued_payloads(line_redis)[0])

    rows = rows_by_origin(sqlite_engine, frames)
    assert (outcome.scored, outcome.errors) == (len(frames) - 1, 1)
    assert rows["corrupt"]["verdict"] == "error" and "not a decodable image" in rows["corrupt"]["error"]  # the host decoder says why
    for frame, host_score in zip(frames[:-1], host_scores):
        row = rows[frame.origin]
        assert row["verdict"] == ("defect" if frame.origin.startswith("defective") else "good"), frame.origin
        assert row["raw_score"] == pytest.approx(host_score, rel=1e-3), frame.origin
    frames_compared, largest, trusted = decoding.measured()[version]
    assert frames_compared == 8 and trusted is True and largest <= decoding.tolerance
    assert decoding.trusted(context.models.model_for_line(LINE)) is True


def test_a_device_decoder_outside_the_tolerance_is_not_trusted_and_the_host_decodes(line_redis, sqlite_engine, small_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    import worker.jobs as jobs

    version = register_checkpoint(sqlite_engine, small_checkpoint)
    decode = jobs.decode_on_device
    # A decoder that rounds differently from the host's by far more than a JPEG decoder does: frames come out brighter.
    monkeypatch.setattr(jobs, "decode_on_device", lambda *args: [image.clamp(max=215) + 40 for image in decode(*args)])
    rng = np.random.default_rng(12)
    frames = [make_frame(jpeg(make_part(rng, False)), f"good-{i}") for i in range(8)]
    decoding = DeviceDecoding(torch.device("cpu"), check_frames=8)
    host_scores = load_checkpoint(small_checkpoint, device="cpu", precision="fp32").raw_scores([decode_image(f.data) for f in frames])
    publish(line_redis, frames, batch_size=4)
    context = make_context(line_redis, sqlite_engine, tmp_path, device_decoding=decoding, batch_size=4)

    for payload in queued_payloads(line_redis):
        score_batch(context, payload)

    frames_compared, largest, trusted = decoding.measured()[version]
    assert trusted is False and frames_compared == 4 and largest > decoding.tolerance
    rows = rows_by_origin(sqlite_engine, frames)
    assert [rows[f.origin]["raw_score"] for f in frames] == pytest.approx(host_scores, rel=1e-3)  # every row, the host's
