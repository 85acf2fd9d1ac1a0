"""The line's commands: ingest, worker, models, status, db, and the settings they read.

What depends on the database runs on SQLite and PostgreSQL; the rest on SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from line_fixtures import (
    CAMERA,
    LINE,
    LINE_REDIS_URL,
    QUEUE,
    line_redis,  # noqa: F401 - fixture
    line_settings,  # noqa: F401 - fixture
    make_part,
    png,
    sqlite_line_settings,  # noqa: F401 - fixture
)
from pydantic import ValidationError
from store_fixtures import db_url, postgres_run_database  # noqa: F401 - fixtures

from lineguard.cli import main
from lineguard.settings import DEFAULT_REDIS_URL, Settings
from model.checkpoint import read_checkpoint
from store.db import make_engine, schema_revision


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def status_json(capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    return json.loads(out)


def write_images(folder: Path, images: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return folder


def test_models_add_activate_and_list(line_settings, small_checkpoint, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    version = read_checkpoint(small_checkpoint)["version"]
    code, out, _ = run(capsys, "models", "add", str(small_checkpoint), "--line", LINE)
    assert code == 0 and f"lineguard models activate {version} --line {LINE}" in out
    assert json.loads(run(capsys, "models", "list", "--json")[1])[0]["active_for"] == []

    code, out, _ = run(capsys, "models", "activate", version, "--line", LINE)
    assert code == 0

    (listed,) = json.loads(run(capsys, "models", "list", "--json")[1])
    assert listed["version"] == version and listed["active_for"] == [LINE]
    assert listed["checkpoint_path"] == str(small_checkpoint.resolve()) and listed["random_teacher"] is False
    assert listed["teacher_source"].startswith("file:") and listed["threshold"] > 0
    assert status_json(capsys)["lines"][LINE]["active_model"] == version
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and f"active for {LINE}" in out


def test_the_evaluation_reports_pictures_go_with_the_model_into_the_artifact_store(
    sqlite_line_settings, small_checkpoint, synthetic_category, tmp_path, capsys  # noqa: F811
):
    """`eval` records where its report is; `models add` copies the report's pictures to the artifact
    store, where the Models page reads them (a dashboard may not see this machine's folders)."""
    import shutil

    from store.artifacts import open_artifact_store
    from store.records import get_model

    assert run(capsys, "db", "upgrade")[0] == 0
    checkpoint = Path(shutil.copy(small_checkpoint, tmp_path / "evaluated.pt"))
    report = tmp_path / "report"
    assert run(capsys, "eval", str(checkpoint), str(synthetic_category), "--report", str(report), "--device", "cpu", "--no-progress")[0] == 0
    assert read_checkpoint(checkpoint)["metrics"]["report"] == str(report.resolve())
    code, out, _ = run(capsys, "models", "add", str(checkpoint))
    assert code == 0 and f"evaluation pictures (roc curves, score histogram) from {report.resolve()} kept" in out
    version = read_checkpoint(checkpoint)["version"]
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        metrics = get_model(engine, version).metrics
    finally:
        engine.dispose()
    artifacts = open_artifact_store(sqlite_line_settings.artifacts_url)
    assert set(metrics["report_pictures"]) == {"ROC curves", "Score histogram"}
    for title, name in (("ROC curves", "roc_curves.png"), ("Score histogram", "score_histogram.png")):
        assert artifacts.get(metrics["report_pictures"][title]) == (report / name).read_bytes()
    code, _, err = run(capsys, "models", "add", str(checkpoint), "--report", str(tmp_path / "nowhere"))
    assert code == 2 and "no such report folder" in err


def test_models_add_refuses_what_it_cannot_do(sqlite_line_settings, small_checkpoint, tmp_path, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    code, _, err = run(capsys, "models", "add", str(small_checkpoint), "--activate")
    assert code == 2 and "--activate needs --line" in err
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("hello")
    code, _, err = run(capsys, "models", "add", str(not_a_model), "--line", LINE, "--activate")
    assert code == 2 and "is not a lineguard checkpoint" in err and "Traceback" not in err
    code, _, err = run(capsys, "models", "activate", "ts-missing", "--line", LINE)
    assert code == 2 and "not registered" in err


def test_a_folder_is_ingested_scored_and_counted(line_settings, small_checkpoint, tmp_path, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    assert run(capsys, "models", "add", str(small_checkpoint), "--line", LINE, "--activate")[0] == 0
    rng = np.random.default_rng(30)
    images = {f"good-{i}.png": png(make_part(rng, False)) for i in range(4)}
    images |= {f"defect-{i}.png": png(make_part(rng, True)) for i in range(2)}
    images |= {"broken.png": png(make_part(rng, False))[:200], "empty.jpg": b""}
    folder = write_images(tmp_path / "incoming", images)

    code, out, _ = run(capsys, "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress")
    assert code == 0 and "8 frames queued, 0 dropped" in out
    waiting = status_json(capsys)["lines"][LINE]
    assert (waiting["pending"], waiting["published"], waiting["frames"]) == (8, 8, 0)

    assert run(capsys, "worker", "--burst", "--device", "cpu", "--batch-size", "4")[0] == 0

    status = status_json(capsys)
    counts = status["lines"][LINE]
    assert {key: counts[key] for key in ("frames", "flagged", "errors", "pending", "dropped")} == {
        "frames": 8, "flagged": 2, "errors": 2, "pending": 0, "dropped": 0,
    }
    assert counts["defect_rate"] == pytest.approx(2 / 6)
    assert counts["frames_per_s"] > 0
    assert status["queue"] == {"name": QUEUE, "queued_jobs": 0, "started_jobs": 0, "failed_jobs": 0}

    # Running the folder again publishes nothing: every file was ingested once.
    code, out, _ = run(capsys, "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress")
    assert code == 0 and "0 frames queued" in out


def test_a_folder_sent_by_reference_is_read_by_workers_inside_their_frame_root(sqlite_line_settings, small_checkpoint, tmp_path, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    assert run(capsys, "models", "add", str(small_checkpoint), "--line", LINE, "--activate")[0] == 0
    rng = np.random.default_rng(31)
    images = {"good.png": png(make_part(rng, False)), "defect.png": png(make_part(rng, True))}
    folder = write_images(tmp_path / "shared" / "incoming", images)

    code, out, _ = run(capsys, "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--by-reference")
    assert code == 0 and "2 frames queued" in out
    assert run(capsys, "worker", "--burst", "--device", "cpu", "--frame-root", str(tmp_path / "shared"))[0] == 0

    counts = status_json(capsys)["lines"][LINE]
    assert (counts["frames"], counts["flagged"], counts["errors"]) == (2, 1, 0)
    assert run(capsys, "worker", "--frame-root", str(tmp_path / "missing"))[0] == 2


def test_a_full_queue_drops_or_blocks_as_configured_and_drops_are_counted(sqlite_line_settings, tmp_path, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    rng = np.random.default_rng(31)
    dropping = write_images(tmp_path / "dropping", {f"{i}.png": png(make_part(rng, False)) for i in range(5)})
    bound = ("--batch-size", "1", "--max-queued-jobs", "1", "--no-progress")

    code, out, _ = run(capsys, "ingest", "folder", str(dropping), "--line", LINE, "--camera", CAMERA, "--policy", "drop", *bound)

    assert code == 0 and "1 frames queued, 4 dropped" in out
    status = status_json(capsys)
    assert status["dropped"] == 4
    assert {key: status["lines"][LINE][key] for key in ("pending", "dropped", "published")} == {"pending": 1, "dropped": 4, "published": 1}
    code, out, _ = run(capsys, "status")
    assert code == 0 and "4 dropped" in out and "1 pending" in out

    blocking = write_images(tmp_path / "blocking", {"a.png": png(make_part(rng, False))})
    code, _, err = run(capsys, "ingest", "folder", str(blocking), "--line", LINE, "--camera", "cam-2", "--block-timeout", "0.3", *bound)
    assert code == 2 and "stayed full" in err and "Traceback" not in err
    assert status_json(capsys)["dropped"] == 4  # blocking never drops


def test_a_video_is_ingested_at_the_capped_rate(sqlite_line_settings, tmp_path, capsys):  # noqa: F811
    assert run(capsys, "db", "upgrade")[0] == 0
    video = tmp_path / "belt.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for index in range(20):
        writer.write(np.full((64, 64, 3), index * 10, dtype=np.uint8))
    writer.release()

    code, out, _ = run(capsys, "ingest", "video", str(video), "--line", LINE, "--camera", CAMERA, "--fps", "5", "--no-progress")

    assert code == 0 and "20 frames read, 10 published" in out
    assert status_json(capsys)["lines"][LINE]["pending"] == 10


def test_db_upgrade_brings_a_new_database_to_the_newest_schema(line_settings, capsys):  # noqa: F811
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "schema revision" in out
    engine = make_engine(line_settings.database_url)
    try:
        assert schema_revision(engine) is not None and schema_revision(engine) in out
    finally:
        engine.dispose()


def test_an_unreachable_redis_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'line.db'}")
    code, _, err = run(capsys, "status")
    assert code == 2 and "cannot reach Redis at redis://127.0.0.1:1/0" in err and "Traceback" not in err


def test_settings_come_from_the_environment_when_asked():
    assert Settings.from_environment({}).redis_url == DEFAULT_REDIS_URL
    settings = Settings.from_environment({"REDIS_URL": LINE_REDIS_URL, "LINEGUARD_QUEUE": "q", "DATABASE_URL": ""})
    assert (settings.redis_url, settings.queue_name) == (LINE_REDIS_URL, "q")
    assert settings.environment()["LINEGUARD_QUEUE"] == "q"
    with pytest.raises(ValidationError, match="REDIS_URL 'localhost:6379'"):
        Settings.from_environment({"REDIS_URL": "localhost:6379"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(redis_ulr=LINE_REDIS_URL)


def test_the_file_size_limit_comes_from_the_environment_or_the_command_line(sqlite_line_settings, tmp_path, monkeypatch, capsys):  # noqa: F811
    assert Settings.from_environment({}).max_file_bytes == 64 * 2**20
    assert Settings.from_environment({"LINEGUARD_MAX_FILE_MB": "0.5"}).max_file_bytes == 2**19
    with pytest.raises(ValidationError, match="max_file_mb"):
        Settings.from_environment({"LINEGUARD_MAX_FILE_MB": "-1"})
    assert run(capsys, "db", "upgrade")[0] == 0
    folder = write_images(tmp_path / "in", {"small.png": png(make_part(np.random.default_rng(0), False))})
    (folder / "large.png").write_bytes(b"\0" * 2**20)
    monkeypatch.setenv("LINEGUARD_MAX_FILE_MB", "2")
    code, out, _ = run(capsys, "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--max-file-mb", "0.5")
    assert code == 0 and "1 published" in out and "1 skipped (1 size)" in out
    code, _, err = run(capsys, "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--max-file-mb", "0")
    assert code == 2 and "max_file_mb" in err


def test_status_and_models_list_never_migrate_and_say_what_to_run(sqlite_line_settings, capsys):  # noqa: F811
    for command in (("status",), ("models", "list")):
        code, _, err = run(capsys, *command)
        assert code == 2 and "has no lineguard schema" in err and "lineguard db upgrade" in err, command
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert schema_revision(engine) is None  # still untouched
    finally:
        engine.dispose()
    assert run(capsys, "db", "upgrade")[0] == 0
    assert run(capsys, "models", "list")[0] == 0


def test_status_reads_the_queue_without_cleaning_its_registries(line_redis, sqlite_line_settings, capsys):  # noqa: F811
    """A job whose lease ran out stays where it is: only a worker's cleanup may hand it back."""
    from rq.registry import StartedJobRegistry

    from wire.protocol import make_queue

    assert run(capsys, "db", "upgrade")[0] == 0
    queue = make_queue(line_redis, QUEUE)
    job = queue.enqueue("worker.jobs.score_frames", {"frames": []}, result_ttl=0)
    line_redis.lrem(queue.key, 1, job.id)
    line_redis.zadd(StartedJobRegistry(queue=queue).key, {f"{job.id}:dead-execution": 1})  # expired long ago
    status = status_json(capsys)
    assert status["queue"]["started_jobs"] == 1 and status["queue"]["queued_jobs"] == 0
    assert line_redis.zcard(StartedJobRegistry(queue=queue).key) == 1 and queue.count == 0
