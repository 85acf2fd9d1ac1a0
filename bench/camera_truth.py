"""Honest cameras against a real RTSP server (GStreamer's, tests/rtsp_server.py), with the defaults:

1. a source that never existed (an RTSP path the server does not have, a missing file, camera 9):
   `lineguard ingest video` exit status and seconds, the whole process included;
2. a freeze (the server up, no frames): seconds from the last frame to the `stalled` event (stall
   timeout 5 s), and frames published inside the freeze;
3. an outage of --outage seconds (the server killed and started again): seconds from the camera's
   return to its next published frame.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/camera_truth.py [--outage 15]

Needs /usr/bin/python3 with GStreamer's RTSP server bindings (see .ci/run). The store is SQLite in a
temporary folder; the queue is the bench's own, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from redis import Redis

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT / "tests"))
sys.path.append(str(Path(__file__).resolve().parent))

from pipeline import forget_bench_keys  # noqa: E402
from camera_fixtures import RtspCamera, events, published  # noqa: E402

from ingest.publisher import Publisher  # noqa: E402
from ingest.video import DEFAULT_STALL_TIMEOUT_S, VideoSource  # noqa: E402
from lineguard.settings import Settings  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402


def wait_for(condition, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=15.0, help="seconds the camera is away (default 15)")
    parser.add_argument("--freeze", type=float, default=8.0, help="seconds the camera is frozen (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-cameras-") as folder:
        queue = f"lineguard-cameras-{os.getpid()}"
        settings = Settings.from_environment().model_copy(update={"database_url": f"sqlite:///{folder}/store.db", "queue_name": queue})
        engine = make_engine(settings.database_url)
        upgrade(engine)
        redis = Redis.from_url(settings.redis_url)
        camera = RtspCamera()
        camera.start()
        try:
            environment = {**os.environ, **settings.environment()}
            for missing in (camera.url.replace("/cam", "/no-such-camera"), f"{folder}/missing.mp4", "9"):
                started = time.monotonic()
                run = subprocess.run(
                    [sys.executable, "-m", "lineguard.cli", "ingest", "video", missing, "--line", "bench", "--camera", "never", "--no-progress"],
                    env=environment, capture_output=True, text=True, cwd=REPO_ROOT,
                )
                reason = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
                print(f"never existed, {missing}: exit {run.returncode} after {time.monotonic() - started:.2f} s (process included): {reason}", flush=True)

            publisher = Publisher(redis, queue_name=queue, batch_size=2, max_wait_s=0.1, max_queued_jobs=100_000, frame_ttl_s=300)
            source = VideoSource(camera.url, "bench", "cam-1", engine=engine)
            stop = threading.Event()
            runner = threading.Thread(target=source.run, args=(publisher,), kwargs={"stop_event": stop})
            runner.start()
            wait_for(lambda: len(published(redis, queue)) >= 20, 30)

            frozen_at = camera.signal(signal.SIGUSR1)
            wait_for(lambda: any(kind == "stalled" for kind, _, _ in events(engine)), DEFAULT_STALL_TIMEOUT_S + 10)
            told_at = max(at for kind, at, _ in events(engine) if kind == "stalled")
            time.sleep(max(0.0, frozen_at + args.freeze - time.time()))
            thawed_at = camera.signal(signal.SIGUSR2)
            wait_for(lambda: published(redis, queue)[-1] > thawed_at, 10)
            times = published(redis, queue)
            last_frame = max(t for t in times if t <= told_at)
            inside = [t for t in times if told_at < t < thawed_at]
            print(
                f"freeze of {args.freeze:g} s: told {told_at - last_frame:.2f} s after the last frame (stall timeout "
                f"{DEFAULT_STALL_TIMEOUT_S:g} s), {told_at - frozen_at:.2f} s after the freeze; {len(inside)} frames published "
                f"inside it; next frame {min(t for t in times if t > thawed_at) - thawed_at:.2f} s after the thaw",
                flush=True,
            )

            down_at = camera.stop()
            time.sleep(args.outage)
            back_at = camera.start()
            wait_for(lambda: published(redis, queue)[-1] > back_at, 30)
            first_back = min(t for t in published(redis, queue) if t > back_at)
            print(
                f"outage of {back_at - down_at:.1f} s: next frame {first_back - back_at:.2f} s after the camera's return",
                flush=True,
            )
            stop.set()
            runner.join(15)
        finally:
            camera.stop()
            forget_bench_keys(redis, queue, "bench")
            engine.dispose()


if __name__ == "__main__":
    main()
