"""`lineguard models recalibrate|activate|rollback|history`: a line's model learns from its reviews,
and every change of model is recorded. Rows carry raw scores as a worker writes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from learning_fixtures import untrained_checkpoint  # noqa: F401 - fixture
from line_fixtures import LINE, line_redis, sqlite_line_settings  # noqa: F401 - fixtures
from sqlalchemy import Engine
from store_fixtures import make_record

from lineguard.cli import main
from lineguard.registration import register_checkpoint
from lineguard.settings import Settings
from model.checkpoint import load_checkpoint, weights_version
from store.db import make_engine, upgrade
from store.records import active_model_for_line, get_model, write_inspections


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
