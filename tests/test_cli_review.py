"""`lineguard review`: the Review page's rows from the command line."""

from __future__ import annotations

import pytest
from line_fixtures import line_redis, sqlite_line_settings  # noqa: F401 - fixtures
from sqlalchemy import Engine
from store_fixtures import make_record

from lineguard.cli import main
from lineguard.settings import Settings
from store.db import make_engine, upgrade
from store.records import inspection_detail, review_history, write_inspections


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def flagged_store(sqlite_line_settings: Settings) -> Engine:  # noqa: F811
    engine = make_engine(sqlite_line_settings.database_url)
    upgrade(engine)
    write_inspections(engine, [make_record(f"f-{i}", verdict="defect", score=0.7) for i in range(3)])
    yield engine
    engine.dispose()


def test_review_writes_the_review_pages_rows_and_keeps_history(flagged_store: Engine, capsys) -> None:
    code, out, _ = run(capsys, "review", "f-0", "f-1", "--verdict", "false_alarm", "--note", "glare", "--reviewer", "ana")
    assert code == 0 and "2 part(s) reviewed as false_alarm by ana: f-0, f-1" in out
    code, _, _ = run(capsys, "review", "f-1", "--verdict", "defect", "--reviewer", "ben")
    assert code == 0
    details = {frame_id: inspection_detail(flagged_store, index + 1) for index, frame_id in enumerate(["f-0", "f-1", "f-2"])}
    assert details["f-0"].review.verdict == "false_alarm" and details["f-0"].review.note == "glare"
    assert (details["f-1"].review.verdict, details["f-1"].review.reviewer) == ("confirmed", "ben")
    assert details["f-2"].review is None
    assert [entry.verdict for entry in review_history(flagged_store, 2)] == ["false_alarm", "confirmed"]


def test_an_unknown_frame_id_is_one_clear_line_and_saves_nothing(flagged_store: Engine, capsys) -> None:
    code, _, err = run(capsys, "review", "f-0", "nope", "--verdict", "defect", "--reviewer", "ana")
    assert code == 2 and "no inspection of frame(s) nope; nothing was saved" in err and "Traceback" not in err
    assert inspection_detail(flagged_store, 1).review is None
