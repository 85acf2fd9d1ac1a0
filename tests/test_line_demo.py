"""`lineguard demo` on a machine where no Redis answers: it starts one, runs the line, stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torchvision
from line_fixtures import REPO_ROOT, row_count, wait_until
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from lineguard import demo as demo_module
from lineguard.services import redis_answers
from store.db import make_engine
from store.schema import Inspection


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def rows_once_created(engine: Engine) -> int:
    """Rows in the demo's store; 0 while the demo is still creating its tables (its file exists first)."""
    try:
        return row_count(engine)
    except OperationalError:
        return 0


def is_running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_demo_starts_redis_runs_the_line_and_stops_on_sigterm(small_checkpoint, tmp_path):
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing answers there
    environment = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "LINEGUARD_QUEUE")}
    environment["REDIS_URL"] = redis_url
    parts = 24
    demo_dir = tmp_path / "demo"
    output = tmp_path / "demo.out"
    with output.open("wb") as out:
        demo = subprocess.Popen(
            [
                sys.executable, "-m", "lineguard.cli", "demo", "--model", str(small_checkpoint), "--parts", str(parts),
                "--fps", "12", "--workers", "2", "--device", "cpu", "--no-dashboard", "--dir", str(demo_dir),
            ],
            cwd=REPO_ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        database = demo_dir / "lineguard.db"
        wait_until(database.exists, 60, "the demo's database")
        engine = make_engine(f"sqlite:///{database}")
        wait_until(lambda: rows_once_created(engine) == parts, 120, f"{parts} rows in the demo's database", poll_s=0.5)
        children = children_of(demo.pid)
        assert len(children) == 3  # redis-server and two workers

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
        # Shown by pytest only when the test fails: what the demo said is the first clue.
        print(output.read_text(errors="replace"))

    text = output.read_text()
    assert "started redis-server at redis://127.0.0.1:" in text
    for shown in ("lineguard demo is running", "database   sqlite:///", "lineguard status", "demo-line:", "stopped."):
        assert shown in text, shown
    assert not [pid for pid in children if is_running(pid)]
    started_url = text.split("started redis-server at ", 1)[1].split()[0]
    assert not redis_answers(started_url)
    with engine.connect() as connection:
        verdicts = set(connection.scalars(select(Inspection.verdict)))
    engine.dispose()
    assert verdicts <= {"good", "defect"}
    assert list((demo_dir / "logs").glob("worker-*.log"))
    assert list((demo_dir / "appendonlydir").glob("*.aof")), "the demo's Redis keeps an append-only file"


def test_without_imagenet_weights_the_demo_takes_a_random_teacher_and_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("LINEGUARD_TEACHER_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision cache

    def offline(*args, **kwargs):
        raise OSError("network unreachable")  # a test never downloads weights, even where it could

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    monkeypatch.setattr(demo_module, "SHARED_TEACHER_WEIGHTS", tmp_path / "missing.pth")
    assert demo_module.teacher_weights_spec() == "random"
    assert "RANDOM TEACHER" in demo_module.random_teacher_warning()

    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(b"")
    monkeypatch.setattr(demo_module, "SHARED_TEACHER_WEIGHTS", weights)
    assert demo_module.teacher_weights_spec() == str(weights)
    monkeypatch.setenv("LINEGUARD_TEACHER_WEIGHTS", str(weights))
    assert demo_module.teacher_weights_spec() is None  # training reads the variable itself
