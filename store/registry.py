"""Models known to the store and which one each line uses.

A model is registered once per version (re-registering updates it); activating a model for a line
is what workers poll to switch models without a restart. Every activation is also kept in
``model_activations`` (who, when, from which version, why), which is what a rollback reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy import insert as insert_into
from sqlalchemy.orm import Session

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError, UnknownModelError
from store.schema import LineModel, Model, ModelActivation

#: Who an activation is recorded as made by when the caller cannot say.
UNKNOWN_ACTOR = "unknown"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A registered model: where its checkpoint is and what it was trained and calibrated with."""

    version: str
    checkpoint_path: str
    created_at: datetime
    recipe: dict[str, Any]
    metrics: dict[str, Any] | None
    calibration: dict[str, Any]
    teacher_source: str
    random_teacher: bool
    training_data: dict[str, Any]


def register_model(
    engine: Engine,
    *,
    version: str,
    checkpoint_path: str,
    recipe: dict[str, Any],
    calibration: dict[str, Any],
    metrics: dict[str, Any] | None,
    teacher_source: str,
    random_teacher: bool,
    training_data: dict[str, Any],
) -> None:
    """Add model ``version`` or update its fields; ``created_at`` stays that of the first registration.

    ``recipe``, ``calibration``, ``metrics`` and ``training_data`` must be JSON-serialisable.
    """
    if not version:
        raise InvalidArgumentError("model version must not be empty")
    documents = {"recipe": recipe, "calibration": calibration, "metrics": metrics, "training_data": training_data}
    for name, document in documents.items():
        _require_json(document, f"model {version!r}: {name}")
    values = {
        "checkpoint_path": checkpoint_path,
        "teacher_source": teacher_source,
        "random_teacher": random_teacher,
        **documents,
    }
    insert = upsert_insert(engine, Model).values(version=version, created_at=datetime.now(UTC), **values)
    upsert = insert.on_conflict_do_update(
        index_elements=[Model.version], set_={name: insert.excluded[name] for name in values}
    )
    with write_transaction(engine) as connection:
        connection.execute(upsert)


@dataclass(frozen=True, slots=True)
class ActivationInfo:
    """One change of a line's model: to ``model_version`` from ``previous_version`` (None at first)."""

    line: str
    model_version: str
    previous_version: str | None
    activated_by: str
    activated_at: datetime
    reason: str | None


def activate_model(engine: Engine, line: str, version: str, *, by: str = UNKNOWN_ACTOR, reason: str | None = None) -> ActivationInfo:
    """Make ``version`` the model that ``line`` scores with from now on, recorded with who and why."""
    if not line:
        raise InvalidArgumentError("line must not be empty")
    if not by or not by.strip():
        raise InvalidArgumentError("an activation must name who made it (got an empty name)")
    with write_transaction(engine) as connection:
        if connection.execute(select(Model.version).where(Model.version == version)).first() is None:
            raise UnknownModelError(f"cannot activate model {version!r} for line {line!r}: it is not registered")
        return _activate(engine, connection, line, version, by, reason)


def rollback_model(engine: Engine, line: str, *, by: str, reason: str | None = None) -> ActivationInfo:
    """Undo ``line``'s latest activation: it scores with the version it had before (recorded as an
    activation of its own, so a second rollback undoes the first)."""
    with write_transaction(engine) as connection:
        latest = connection.execute(
            select(ModelActivation.model_version, ModelActivation.previous_version)
            .where(ModelActivation.line == line)
            .order_by(ModelActivation.activated_at.desc(), ModelActivation.id.desc())
            .limit(1)
        ).first()
        if latest is None or latest.previous_version is None:
            raise UnknownModelError(f"line {line!r} has no earlier model to roll back to")
        return _activate(engine, connection, line, latest.previous_version, by, reason or f"rollback of {latest.model_version}")


def activation_history(engine: Engine, line: str | None = None) -> list[ActivationInfo]:
    """The activations of ``line`` (of every line when None), newest first."""
    query = select(ModelActivation).order_by(ModelActivation.activated_at.desc(), ModelActivation.id.desc())
    if line is not None:
        query = query.where(ModelActivation.line == line)
    with Session(engine) as session:
        return [
            ActivationInfo(row.line, row.model_version, row.previous_version, row.activated_by, row.activated_at, row.reason)
            for row in session.scalars(query)
        ]


def _activate(engine: Engine, connection: Connection, line: str, version: str, by: str, reason: str | None) -> ActivationInfo:
    """Point ``line`` at ``version`` and record the change, in the caller's transaction."""
    now = datetime.now(UTC)
    previous = connection.execute(select(LineModel.model_version).where(LineModel.line == line)).scalar_one_or_none()
    insert = upsert_insert(engine, LineModel).values(line=line, model_version=version, activated_at=now)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[LineModel.line],
            set_={"model_version": insert.excluded.model_version, "activated_at": insert.excluded.activated_at},
        )
    )
    activation = ActivationInfo(line, version, previous, by.strip(), now, reason)
    connection.execute(insert_into(ModelActivation).values(**asdict(activation)))
    return activation


def active_models(engine: Engine) -> dict[str, str]:
    """The active model version of every line that has one, by line."""
    with engine.connect() as connection:
        rows = connection.execute(select(LineModel.line, LineModel.model_version))
        return {row.line: row.model_version for row in rows}


def active_model_for_line(engine: Engine, line: str) -> str | None:
    """The model version ``line`` scores with, or None when none was activated for it."""
    with engine.connect() as connection:
        return connection.execute(select(LineModel.model_version).where(LineModel.line == line)).scalar_one_or_none()


def active_model_info(engine: Engine, line: str) -> ModelInfo:
    """The registered model ``line`` scores with; raises UnknownModelError when it has none."""
    version = active_model_for_line(engine, line)
    if version is None:
        raise UnknownModelError(f"line {line!r} has no active model (activate one with `lineguard models activate`)")
    return get_model(engine, version)


def get_model(engine: Engine, version: str) -> ModelInfo:
    """The registered model ``version``; raises UnknownModelError when there is none."""
    with Session(engine) as session:
        model = session.get(Model, version)
        if model is None:
            raise UnknownModelError(f"model {version!r} is not registered")
        return _model_info(model)


def list_models(engine: Engine) -> list[ModelInfo]:
    """Every registered model, newest first."""
    with Session(engine) as session:
        models = session.scalars(select(Model).order_by(Model.created_at.desc(), Model.version))
        return [_model_info(model) for model in models]


def _model_info(model: Model) -> ModelInfo:
    return ModelInfo(
        version=model.version,
        checkpoint_path=model.checkpoint_path,
        created_at=model.created_at,
        recipe=model.recipe,
        metrics=model.metrics,
        calibration=model.calibration,
        teacher_source=model.teacher_source,
        random_teacher=model.random_teacher,
        training_data=model.training_data,
    )


def _require_json(document: Any, what: str) -> None:
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{what} is not a JSON document: {error}") from error

