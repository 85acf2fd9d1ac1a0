"""Shadow mode in the store: which candidate each line also runs, and what it said on live frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, case, delete, func, select

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError, UnknownModelError
from store.schema import Model, ShadowModel, ShadowResult


@dataclass(frozen=True, slots=True)
class ShadowVerdict:
    """A shadow candidate's verdict on one live frame, and the active model's."""

    frame_id: str
    line: str
    model_version: str
    raw_score: float
    flagged: bool
    active_flagged: bool
    image_key: str | None


@dataclass(frozen=True, slots=True)
class ShadowAgreement:
    """How often a candidate agreed with the active model on a line, and the latest disagreements."""

    line: str
    model_version: str
    frames: int
    agreed: int
    disagreements: list[ShadowVerdict]

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.frames if self.frames else None


def start_shadow(engine: Engine, line: str, version: str, by: str) -> None:
    """Make workers also score ``line``'s frames with ``version`` (replacing any other shadow)."""
    if not by or not by.strip():
        raise InvalidArgumentError("starting a shadow must name who did (got an empty name)")
    values = {"model_version": version, "started_by": by, "started_at": datetime.now(UTC)}
    insert = upsert_insert(engine, ShadowModel).values(line=line, **values)
    with write_transaction(engine) as connection:
        if connection.execute(select(Model.version).where(Model.version == version)).first() is None:
            raise UnknownModelError(f"cannot shadow model {version!r} on line {line!r}: it is not registered")
        connection.execute(insert.on_conflict_do_update(index_elements=[ShadowModel.line], set_=values))


def stop_shadow(engine: Engine, line: str) -> bool:
    """Stop shadowing on ``line``; returns whether a shadow was running. Its results stay."""
    with write_transaction(engine) as connection:
        return connection.execute(delete(ShadowModel).where(ShadowModel.line == line)).rowcount > 0


def shadow_models(engine: Engine) -> dict[str, str]:
    """The shadow candidate of every line that has one, by line."""
    with engine.connect() as connection:
        return {row.line: row.model_version for row in connection.execute(select(ShadowModel.line, ShadowModel.model_version))}


def write_shadow_verdicts(engine: Engine, verdicts: Sequence[ShadowVerdict]) -> None:
    """Store shadow verdicts; a frame scored again (a retried batch) keeps its first shadow verdict."""
    if not verdicts:
        return
    now = datetime.now(UTC)
    rows = [{**{name: getattr(v, name) for name in ShadowVerdict.__slots__}, "scored_at": now} for v in verdicts]
    insert = upsert_insert(engine, ShadowResult).values(rows).on_conflict_do_nothing(
        index_elements=[ShadowResult.frame_id, ShadowResult.model_version]
    )
    with write_transaction(engine) as connection:
        connection.execute(insert)


def shadow_agreement(engine: Engine, line: str, version: str, shown: int = 12) -> ShadowAgreement:
    """Agreement of ``version`` with the active verdicts on ``line``, and its ``shown`` latest disagreements."""
    where = (ShadowResult.line == line, ShadowResult.model_version == version)
    disagree = ShadowResult.flagged != ShadowResult.active_flagged
    with engine.connect() as connection:
        frames, disagreed = connection.execute(
            select(func.count(), func.coalesce(func.sum(case((disagree, 1), else_=0)), 0)).where(*where)
        ).one()
        rows = connection.execute(
            select(ShadowResult).where(*where, disagree).order_by(ShadowResult.scored_at.desc(), ShadowResult.id.desc()).limit(shown)
        ).all()
    disagreements = [
        ShadowVerdict(row.frame_id, row.line, row.model_version, row.raw_score, row.flagged, row.active_flagged, row.image_key)
        for row in rows
    ]
    return ShadowAgreement(line, version, int(frames), int(frames) - int(disagreed), disagreements)
