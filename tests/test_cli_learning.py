"""`lineguard models recalibrate|activate|rollback|history`: a line's model learns from its reviews,
and every change of model is recorded. Rows carry raw scores as a worker writes them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from learning_fixtures import untrained_checkpoint  # noqa: F401 - fixture
from line_fixtures import LINE, line_redis, sqlite_line_settings  # noqa: F401 - fixtures
from sqlalchemy import Engine
from store_fixtures import BASE_TIME, make_record

from lineguard.cli import main
from lineguard.registration import register_checkpoint
from lineguard.retraining import gather_training_data, line_weights
from lineguard.settings import Settings
from model.checkpoint import load_checkpoint, weights_version
from store.db import make_engine, upgrade
from store.records import active_model_for_line, get_model, write_inspections
from wire.training_jobs import TrainingRequest, queue_training, read_training, take_training, training_jobs


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def line_store(sqlite_line_settings: Settings, untrained_checkpoint) -> tuple[Engine, str]:  # noqa: F811
    """A line scoring with a model: 120 passed parts, 10 flagged good parts, 4 flagged
    defects and 2 flagged parts nobody reviewed yet."""
    engine = make_engine(sqlite_line_settings.database_url)
    upgrade(engine)
    version = register_checkpoint(engine, untrained_checkpoint, LINE, by="setup")["version"]
    scores = np.random.default_rng(0).normal(3.0, 0.2, 120)
    rows = [make_record(f"p-{i}", line=LINE, raw_score=float(s), model_version=version) for i, s in enumerate(scores)]
    flagged = {**{f"fa-{i}": 3.7 + 0.03 * i for i in range(10)}, **{f"d-{i}": 6.0 + i for i in range(4)}, "u-0": 3.9, "u-1": 8.0}
    rows += [make_record(f, line=LINE, verdict="defect", raw_score=s, model_version=version) for f, s in flagged.items()]
    write_inspections(engine, rows)
    yield engine, version
    engine.dispose()


def test_recalibration_passes_the_reviewed_false_alarms_and_keeps_the_defects(line_store, capsys) -> None:
    engine, version = line_store
    assert run(capsys, "review", *[f"fa-{i}" for i in range(10)], "--verdict", "false_alarm", "--reviewer", "ana")[0] == 0
    assert run(capsys, "review", "d-0", "d-1", "d-2", "d-3", "--verdict", "defect", "--reviewer", "ana")[0] == 0

    code, out, _ = run(capsys, "models", "recalibrate", "--line", LINE, "--by", "ana", "--activate")
    assert code == 0, out
    assert "recalibrated on 130 of the line's parts (120 passed, 10 reviewed as false alarms)" in out
    assert "2 flagged parts await review" in out and "flags about 1.0% of good parts" in out
    assert "passed these false alarms (10): fa-0, fa-1" in out
    assert "still flagged these confirmed defects (4): d-0, d-1, d-2, d-3" in out
    assert "MISSED these confirmed defects (0): -" in out

    new_version = active_model_for_line(engine, LINE)
    assert new_version != version and weights_version(new_version) == version
    model = get_model(engine, new_version)
    assert model.training_data["recalibration"]["parts"] == 130
    loaded = load_checkpoint(model.checkpoint_path, device="cpu")  # what a worker does on its next refresh
    assert loaded.version == new_version and loaded.calibration.threshold == pytest.approx(model.calibration["threshold"])
    assert 3.97 <= loaded.calibration.threshold < 6.0

    code, out, _ = run(capsys, "models", "rollback", "--line", LINE, "--reason", "want a week of data", "--by", "ben")
    assert code == 0 and f"now scores with {version} again (was {new_version})" in out
    assert active_model_for_line(engine, LINE) == version
    code, out, _ = run(capsys, "models", "history", "--line", LINE, "--json")
    history = [(row["model_version"], row["previous_version"], row["activated_by"], row["reason"]) for row in json.loads(out)]
    assert history == [
        (version, new_version, "ben", "want a week of data"),
        (new_version, version, "ana", f"recalibrated on 130 parts of line {LINE}"),
        (version, None, "setup", None),
    ]


def test_too_few_parts_are_refused_with_how_many_more(line_store, capsys) -> None:
    engine, version = line_store
    code, _, err = run(capsys, "models", "recalibrate", "--line", LINE, "--since", "2099-01-01")
    assert code == 2 and "needs at least 99 good parts" in err and "it has 0 since 2099-01-01T00:00:00+00:00: 99 more needed" in err
    # The 2 unreviewed flags and the reviewed defects are no good parts: 120 passed ones at 1% are enough.
    code, out, _ = run(capsys, "models", "recalibrate", "--line", LINE)
    assert code == 0 and "recalibrated on 120 of the line's parts" in out and "activate it with" in out
    assert active_model_for_line(engine, LINE) == version


def test_rollback_without_an_earlier_model_is_one_clear_line(line_store, capsys) -> None:
    code, _, err = run(capsys, "models", "rollback", "--line", LINE)
    assert code == 2 and "has no earlier model to roll back to" in err
    with pytest.raises(SystemExit) as usage_error:
        main(["models", "recalibrate", "--line", LINE, "--since", "last tuesday"])
    assert usage_error.value.code == 2 and "neither an ISO date" in capsys.readouterr().err


def test_compare_scores_both_models_on_the_stored_pictures(sqlite_line_settings, untrained_checkpoint, capsys) -> None:  # noqa: F811
    """Active and candidate share weights and differ in threshold: the candidate passes the two
    reviewed false alarms and still catches the two defects, and says so by frame id. The active
    model's verdicts are the live ones: a part whose live frame scored high is flagged by it however
    its stored picture scores."""
    from model.calibration import Calibration
    from model.checkpoint import save_recalibrated
    from model.images import decode_image
    from model.synthetic import good_part
    from store.artifacts import open_artifact_store
    from worker.evidence import evidence_keys, save_evidence

    engine = make_engine(sqlite_line_settings.database_url)
    upgrade(engine)
    artifacts = open_artifact_store(sqlite_line_settings.artifacts_url)
    model = load_checkpoint(untrained_checkpoint, device="cpu")  # the precision the command picks
    rng = np.random.default_rng(3)
    image_keys = {}
    for i in range(12):
        image = good_part(64, rng)
        frame = f"part-{i}"
        image_keys[frame], _ = save_evidence(artifacts, evidence_keys(LINE, "cam-0", BASE_TIME, frame), image, model.score_images([image])[0], model)
    # Ranked as the comparison sees them: scored from the stored pictures.
    stored = {frame: decode_image(artifacts.get(key), frame) for frame, key in image_keys.items()}
    raw = {frame: result.raw_score for frame, result in zip(stored, model.score_images(list(stored.values())))}
    ranked = sorted(raw, key=raw.get)
    scores = [raw[frame] for frame in ranked]

    def version_at(threshold: float, name: str) -> str:
        calibration = Calibration(threshold, scores[5], 0.01, 0.0, 1.0, 12, "normal")
        path = untrained_checkpoint.with_name(f"{name}.pt")
        save_recalibrated(untrained_checkpoint, calibration, {"test": name}, path)
        return register_checkpoint(engine, path)["version"]

    active = version_at((scores[7] + scores[8]) / 2, "active")  # flags the top 4
    candidate = version_at((scores[9] + scores[10]) / 2, "candidate")  # flags the top 2
    register_checkpoint(engine, Path(get_model(engine, active).checkpoint_path), LINE)
    live = {**raw, ranked[0]: scores[-1] + 1.0}  # its picture scores lowest, its live frame highest
    write_inspections(engine, [
        make_record(frame, line=LINE, verdict="defect" if rank >= 8 or rank == 0 else "good", raw_score=live[frame], model_version=active, image_key=image_keys[frame])
        for rank, frame in enumerate(ranked)
    ])
    assert run(capsys, "review", ranked[0], ranked[10], ranked[11], "--verdict", "defect", "--reviewer", "ana")[0] == 0
    assert run(capsys, "review", ranked[8], ranked[9], "--verdict", "false_alarm", "--reviewer", "ana")[0] == 0

    code, out, _ = run(capsys, "models", "compare", candidate, "--line", LINE, "--device", "cpu", "--json")
    assert code == 0
    comparison = json.loads(out)
    assert comparison["parts"] == 12 and comparison["unreadable"] == [] and comparison["active_live"] == 12
    assert (comparison["active"]["defects_caught"], comparison["active"]["false_alarms"]) == (3, 2)
    assert (comparison["candidate"]["defects_caught"], comparison["candidate"]["false_alarms"]) == (2, 0)
    assert comparison["now_passed"] == {ranked[0]: "defect", ranked[8]: "good", ranked[9]: "good"} and comparison["now_flagged"] == {}
    code, out, _ = run(capsys, "models", "compare", candidate, "--line", LINE, "--device", "cpu")
    assert "false alarms on good parts" in out and f"now passed by the candidate (3): {ranked[0]} (defect), {ranked[8]} (good)" in out
    assert "the active model's verdicts are the line's live ones" in out
    engine.dispose()


def keep_pictures(engine: Engine, settings: Settings, frames: list[str], tmp_path: Path) -> Path:
    """Store a picture (a 64 px synthetic good part) for each of `frames`, as a worker keeps them,
    and return a folder of 16 original good images to retrain from."""
    import cv2
    from sqlalchemy import update

    from model.synthetic import good_part
    from store.artifacts import open_artifact_store
    from store.schema import Inspection

    rng = np.random.default_rng(5)
    original = tmp_path / "train-good"
    original.mkdir()
    for i in range(16):
        cv2.imwrite(str(original / f"{i:03d}.png"), good_part(64, rng))
    artifacts = open_artifact_store(settings.artifacts_url)
    with engine.begin() as connection:
        for frame in frames:
            key = f"pictures/{frame}.jpg"
            artifacts.put(key, cv2.imencode(".jpg", good_part(64, rng))[1].tobytes())
            connection.execute(update(Inspection).where(Inspection.frame_id == frame).values(image_key=key))
    return original


def test_a_queued_retraining_trains_a_candidate_on_the_original_images_and_the_lines_pictures(
    line_store, sqlite_line_settings, line_redis, tmp_path, capsys  # noqa: F811
) -> None:
    """Queued, then run by `worker --train` (a tiny training: random teacher, 64 px, 3 steps): what
    it trains on, and that it stays a candidate. 8 line pictures are too few for a threshold from
    the line: all are trained on."""
    from model.checkpoint import read_checkpoint

    engine, version = line_store
    code, _, err = run(capsys, "models", "retrain", "--line", LINE, "--steps", "3", "--device", "cpu")
    assert code == 2 and "training folder of" in err and "give it with --data DIR" in err

    original = keep_pictures(engine, sqlite_line_settings, [f"fa-{i}" for i in range(3)] + [f"p-{i}" for i in range(5)], tmp_path)
    assert run(capsys, "review", "fa-0", "fa-1", "fa-2", "--verdict", "false_alarm", "--reviewer", "ana")[0] == 0

    code, out_text, _ = run(
        capsys, "models", "retrain", "--line", LINE, "--data", str(original), "--steps", "3", "--queue", "--by", "ana"
    )
    assert code == 0 and "queued training job" in out_text
    [job] = training_jobs(line_redis, LINE)
    assert (job.state, job.request.requested_by, job.request.steps) == ("queued", "ana", 3)
    code, out_text, _ = run(capsys, "worker", "--train", "--burst", "--device", "cpu")
    assert code == 0 and "ran 1 training job(s)" in out_text
    [job] = training_jobs(line_redis, LINE)
    assert job.state == "done" and job.error == "", job.error
    out = Path(get_model(engine, job.candidate).checkpoint_path)
    training_data = read_checkpoint(out)["training_data"]
    assert training_data["n_images"] == 16 + 3 + 5 and training_data["folder"] == str(out.with_name(out.stem + ".data").resolve())
    assert "recalibration" not in training_data
    assert active_model_for_line(engine, LINE) == version


def test_a_retrained_candidate_takes_its_threshold_from_line_pictures_it_never_trained_on(
    line_store, sqlite_line_settings, tmp_path, capsys  # noqa: F811
) -> None:
    """24 line pictures (10 false alarms, 14 passed): every other one is held out, and those 12
    plus the line pictures the training held out itself set the candidate's threshold."""
    from model.checkpoint import read_checkpoint

    engine, version = line_store
    frames = [f"fa-{i}" for i in range(10)] + [f"p-{i}" for i in range(14)]
    original = keep_pictures(engine, sqlite_line_settings, frames, tmp_path)
    assert run(capsys, "review", *frames[:10], "--verdict", "false_alarm", "--reviewer", "ana")[0] == 0

    out = tmp_path / "candidate.pt"
    code, out_text, _ = run(
        capsys, "models", "retrain", "--line", LINE, "--data", str(original), "--steps", "3", "--device", "cpu", "--out", str(out), "--no-progress"
    )
    assert code == 0, out_text
    assert "5 false alarms, 7 passed parts; 12 more line pictures held out for its threshold" in out_text
    held_out = sorted(path.name for path in tmp_path.joinpath("candidate.data.calibration").iterdir())
    trained_on = {path.name for path in tmp_path.joinpath("candidate.data").iterdir()}
    assert len(held_out) == 12 and not set(held_out) & trained_on
    payload = read_checkpoint(out)
    training_data = payload["training_data"]
    assert training_data["n_images"] == 16 + 12
    trained_aside = [name for name in training_data["calibration_images"] if name.startswith("line-")]
    line_calibration = training_data["recalibration"]
    assert (line_calibration["line"], line_calibration["parts"]) == (LINE, 12 + len(trained_aside))
    assert payload["calibration"]["n_images"] == line_calibration["parts"]
    candidate = get_model(engine, payload["version"])
    assert weights_version(candidate.version) == line_calibration["from_version"] and f"registered candidate {candidate.version}" in out_text
    assert active_model_for_line(engine, LINE) == version


def test_each_held_out_line_picture_stands_for_the_lines_good_parts_of_its_kind(line_store, sqlite_line_settings, tmp_path, capsys) -> None:  # noqa: F811
    """Every false alarm keeps its picture but only some passed parts do: a held-out picture is
    weighted by the line's parts of its kind (10 false alarms, 120 passed parts; flagged parts
    nobody reviewed are neither) over the held-out pictures of that kind (5 and 7)."""
    from model.images import list_images
    from store.artifacts import open_artifact_store
    from store.records import active_model_info

    engine, _ = line_store
    frames = [f"fa-{i}" for i in range(10)] + [f"p-{i}" for i in range(14)]
    original = keep_pictures(engine, sqlite_line_settings, frames, tmp_path)
    assert run(capsys, "review", *frames[:10], "--verdict", "false_alarm", "--reviewer", "ana")[0] == 0
    artifacts = open_artifact_store(sqlite_line_settings.artifacts_url)
    data = gather_training_data(engine, artifacts, active_model_info(engine, LINE), LINE, tmp_path / "staging", original)
    assert data.line_good_parts == {"false_alarm": 10, "passed": 120}
    names = [path.name for path in list_images(data.calibration_folder)]
    assert sorted(line_weights(names, data.line_good_parts).tolist()) == [2.0] * 5 + [120 / 7] * 7
    assert line_weights(["line-false_alarm-a.jpg", "line-passed-false_alarm.jpg"], data.line_good_parts).tolist() == [10.0, 120.0]


def test_a_training_job_whose_worker_died_reads_as_abandoned(line_redis) -> None:  # noqa: F811
    job_id = queue_training(line_redis, TrainingRequest(line=LINE, requested_by="ana"))
    assert take_training(line_redis, "trainer-1", timeout_s=1).state == "running"
    line_redis.hset(f"lineguard:training:job:{job_id}", "heartbeat_at", repr(time.time() - 120))
    assert read_training(line_redis, job_id).state == "abandoned"


def test_shadow_starts_and_stops_from_the_command_line(line_store, capsys) -> None:
    engine, version = line_store
    code, out, _ = run(capsys, "models", "shadow", version, "--line", LINE, "--by", "ana")
    assert code == 0 and f"also score with {version}" in out
    assert run(capsys, "models", "shadow", "--line", LINE)[2].count("give a candidate VERSION") == 1
    code, out, _ = run(capsys, "models", "shadow", "--line", LINE, "--stop")
    assert code == 0 and "shadow stopped" in out
