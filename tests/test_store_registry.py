"""Registering models and switching the model each line uses."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from store_fixtures import db_url, postgres_run_database, store_engine  # noqa: F401  (fixtures)

from store import (
    InvalidArgumentError,
    UnknownModelError,
    activate_model,
    activation_history,
    active_model_for_line,
    active_models,
    get_model,
    list_models,
    register_model,
    rollback_model,
)


def register(engine: Engine, version: str, **changes: object) -> None:
    fields: dict[str, object] = {
        "checkpoint_path": f"/models/{version}.pt",
        "recipe": {"image_size": 256, "taps": ["relu2_2", "relu3_3"]},
        "calibration": {"threshold": 3.2, "false_reject_rate": 0.01},
        "metrics": {"image_auroc": 0.97},
        "teacher_source": "file:vgg16.pth",
        "random_teacher": False,
        "training_data": {"folder": "/data/train/good", "images": 48},
    }
    register_model(engine, version=version, **{**fields, **changes})


def test_a_registered_model_reads_back_with_its_documents(store_engine: Engine) -> None:  # noqa: F811
    register(store_engine, "m-1", random_teacher=True, metrics=None)
    model = get_model(store_engine, "m-1")
    assert model.recipe == {"image_size": 256, "taps": ["relu2_2", "relu3_3"]}
    assert model.calibration["threshold"] == 3.2
    assert model.metrics is None
    assert model.random_teacher is True
    assert model.created_at.utcoffset() is not None


def test_registering_again_updates_but_keeps_the_creation_time(store_engine: Engine) -> None:  # noqa: F811
    register(store_engine, "m-1")
    created = get_model(store_engine, "m-1").created_at
    register(store_engine, "m-1", metrics={"image_auroc": 0.99}, checkpoint_path="/elsewhere/m-1.pt")
    model = get_model(store_engine, "m-1")
    assert (model.metrics, model.checkpoint_path) == ({"image_auroc": 0.99}, "/elsewhere/m-1.pt")
    assert model.created_at == created
    assert [m.version for m in list_models(store_engine)] == ["m-1"]


def test_lines_switch_between_registered_models(store_engine: Engine) -> None:  # noqa: F811
    register(store_engine, "m-1")
    register(store_engine, "m-2")
    assert active_model_for_line(store_engine, "line-1") is None
    activate_model(store_engine, "line-1", "m-1")
    activate_model(store_engine, "line-2", "m-1")
    activate_model(store_engine, "line-1", "m-2")
    assert active_models(store_engine) == {"line-1": "m-2", "line-2": "m-1"}
    assert active_model_for_line(store_engine, "line-1") == "m-2"


def test_activating_or_getting_an_unregistered_model_raises(store_engine: Engine) -> None:  # noqa: F811
    with pytest.raises(UnknownModelError, match=r"'ghost'.*not registered"):
        activate_model(store_engine, "line-1", "ghost")
    with pytest.raises(UnknownModelError, match="ghost"):
        get_model(store_engine, "ghost")
    assert active_models(store_engine) == {}


def test_documents_must_be_json(store_engine: Engine) -> None:  # noqa: F811
    with pytest.raises(InvalidArgumentError, match="recipe is not a JSON document"):
        register(store_engine, "m-1", recipe={"size": object()})
    assert list_models(store_engine) == []


def test_activations_are_recorded_and_a_rollback_undoes_the_latest(store_engine: Engine) -> None:  # noqa: F811
    register(store_engine, "m-1")
    register(store_engine, "m-2")
    activate_model(store_engine, "line-1", "m-1", by="ana")
    activate_model(store_engine, "line-1", "m-2", by="ana", reason="fewer false alarms")
    activate_model(store_engine, "line-2", "m-2")
    rolled_back = rollback_model(store_engine, "line-1", by="ben")
    assert (rolled_back.model_version, rolled_back.previous_version, rolled_back.reason) == ("m-1", "m-2", "rollback of m-2")
    assert active_model_for_line(store_engine, "line-1") == "m-1"
    assert [(a.model_version, a.previous_version, a.activated_by) for a in activation_history(store_engine, "line-1")] == [
        ("m-1", "m-2", "ben"),
        ("m-2", "m-1", "ana"),
        ("m-1", None, "ana"),
    ]
    assert len(activation_history(store_engine)) == 4
    with pytest.raises(UnknownModelError, match="no earlier model"):
        rollback_model(store_engine, "line-3", by="ben")
