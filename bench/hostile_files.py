"""Issue 8's hostile folder through the real ingester and a real worker, and what a bomb costs each.

1. The hostile folder (tests/hostile_fixtures.write_hostile_folder: FIFO, socket, symlinks to
   /etc/passwd, /dev/zero and outside, a device node as root, a sparse file over the limit, a
   20000x20000 JPEG bomb, GIF, WebP, a 1x1 image, good parts) goes through `lineguard ingest folder`
   under a 2 GiB address-space cap: what it published and skipped, what it opened (inotify), what
   `lineguard status` counts, and what each taken file became once `lineguard worker --burst` ran.
2. The bomb's cost to the decoding process alone: peak-memory growth of `decode_image` on it, in a
   process capped at its size plus 100 MB.
3. The bomb's cost to a whole worker: the peak resident memory (ru_maxrss) of `lineguard worker
   --burst` on one good frame, and on the same frame plus the bomb, each run twice in a fresh process.

    .venv/bin/python bench/hostile_files.py [--checkpoint MODEL.pt]

Without --checkpoint a model of the default recipe is trained briefly (bench/pipeline.py). Redis is
REDIS_URL (default the local server); the bench uses a queue and a line of its own and removes
its keys at the end; the store is SQLite in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from pipeline import bench_line, forget_bench_keys, train_briefly
from redis import Redis

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the hostile inputs are the tests' own
from hostile_fixtures import (  # noqa: E402
    BOMB_BUDGET_BYTES,
    OpenWatch,
    decode_costs,
    jpeg_bomb,
    with_jpeg_size,
    write_hostile_folder,
)

from ingest.frames import Frame, new_frame_id  # noqa: E402
from ingest.publisher import Publisher  # noqa: E402
from lineguard.settings import Settings  # noqa: E402
from model.synthetic import good_part  # noqa: E402
from store.records import inspections_frame  # noqa: E402

CAMERA = "cam-1"
INGESTER_CAP_BYTES = 2 * 2**30
WORKER_CAP_BYTES = 8 * 2**30
LIMIT_MB = 8
REPEATS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="model to use (default: train one briefly)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-bench-hostile-") as folder:
        workdir = Path(folder)
        checkpoint = args.checkpoint or train_briefly(workdir)
        settings, line, redis, engine = bench_line(workdir, "bench-hostile", checkpoint)
        run = capped_runner(settings, workdir)
        try:
            hostile_folder(workdir, line, run, engine)
            bomb = workdir / "bomb.jpg"
            bomb.write_bytes(jpeg_bomb())
            (cost,) = decode_costs([bomb], BOMB_BUDGET_BYTES).values()
            print(f"\ndecode_image on the {bomb.stat().st_size / 2**20:.1f} MB 20000x20000 JPEG, alone: {cost['outcome']}")
            print(f"  peak memory growth of the decoding process: {cost['growth_bytes'] / 2**20:.1f} MB (budget 100 MB)")
            worker_cost(redis, settings, line, run, bomb.read_bytes())
        finally:
            forget_bench_keys(redis, settings.queue_name, line)
            engine.dispose()


#: Runs a command under an address-space cap and writes the command's peak resident memory (KiB)
#: to a file. A small process of its own starts the command, because a child's ru_maxrss starts
#: from the RSS of the process it was forked from, and this bench holds a model.
LAUNCHER = """
import os, resource, subprocess, sys
report, cap, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
child = subprocess.Popen(command, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
_, status, usage = os.wait4(child.pid, 0)
with open(report, "w") as file:
    file.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def capped_runner(settings: Settings, workdir: Path) -> Callable[..., tuple[str, int]]:
    """A function running `lineguard ARGV...` on the bench's line under an address-space cap:
    (standard output, peak resident memory in bytes). It raises, with the command's errors, when it fails."""
    environment = {**os.environ, **settings.environment()}
    report = workdir / "peak-rss-kib"

    def run(*argv: str, cap_bytes: int) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(report), str(cap_bytes), sys.executable, "-m", "lineguard.cli", *argv],
            env=environment, cwd=REPO_ROOT, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"lineguard {' '.join(argv)} exited with {done.returncode}: {done.stderr[-3000:]}")
        return done.stdout, int(report.read_text()) * 1024

    return run


def hostile_folder(workdir: Path, line: str, run: Callable[..., tuple[str, int]], engine) -> None:
    rng = np.random.default_rng(0)
    hostile = write_hostile_folder(workdir / "incoming", workdir / "outside", [good_part(128, rng) for _ in range(5)], 16 * 2**30)
    watch = OpenWatch([hostile.folder, hostile.outside])
    try:
        output, peak = run(
            "ingest", "folder", str(hostile.folder), "--line", line, "--camera", CAMERA, "--max-file-mb", str(LIMIT_MB),
            "--no-progress", cap_bytes=INGESTER_CAP_BYTES,
        )
        opened = sorted(path.name for path in watch.read())
    finally:
        watch.close()
    print(f"hostile folder, {len(hostile.taken) + len(hostile.skipped)} files; `lineguard ingest folder --max-file-mb {LIMIT_MB}` "
          f"under a {INGESTER_CAP_BYTES / 2**30:.0f} GiB cap: finished, peak RSS {peak / 2**20:.0f} MB")
    print("  " + output.strip().splitlines()[-1])
    print(f"  opened: {', '.join(opened)}")
    special = sorted(set(opened) & set(hostile.skipped))
    print(f"  skipped files opened: {len(special)} of {len(hostile.skipped)}{' (' + ', '.join(special) + ')' if special else ''}")
    status, _ = run("status", "--json", cap_bytes=INGESTER_CAP_BYTES)
    print(f"  lineguard status, skipped files: {json.loads(status)['lines'][line]['skipped_files']}")
    run("worker", "--burst", "--device", "cpu", cap_bytes=WORKER_CAP_BYTES)
    rows = inspections_frame(engine)
    print(f"  `lineguard worker --burst`: {len(rows)} rows for {len(hostile.taken)} files taken "
          f"({rows['frame_id'].nunique()} distinct frames)")
    for row in rows.sort_values("origin").itertuples():
        print(f"    {row.origin:17} {row.verdict:7} {row.error if isinstance(row.error, str) else f'score {row.score:.3f}'}")


def worker_cost(redis: Redis, settings: Settings, line: str, run: Callable[..., tuple[str, int]], bomb: bytes) -> None:
    good = cv2.imencode(".png", cv2.cvtColor(good_part(256, np.random.default_rng(1)), cv2.COLOR_RGB2BGR))[1].tobytes()
    # Control: within the pixel limit, so decoded (108 MB as RGB): shows what a decode adds to the peak.
    large = with_jpeg_size(cv2.imencode(".jpg", cv2.cvtColor(good_part(256, np.random.default_rng(2)), cv2.COLOR_RGB2BGR))[1].tobytes(), 6000, 6000)
    runs = {
        "one good frame": [good],
        "the same frame and the bomb": [good, bomb],
        "control: and a 6000x6000 JPEG": [good, large],
    }
    peaks: dict[str, list[int]] = {label: [] for label in runs}
    for _ in range(REPEATS):
        for label, frames in runs.items():
            with Publisher(redis, queue_name=settings.queue_name, batch_size=len(frames), max_wait_s=60) as publisher:
                for data in frames:
                    publisher.publish(Frame(new_frame_id(), line, CAMERA, "bench:hostile", datetime.now(UTC), data))
            _, peak = run("worker", "--burst", "--device", "cpu", cap_bytes=WORKER_CAP_BYTES)
            peaks[label].append(peak)
    print(f"\npeak RSS of `lineguard worker --burst` (fresh process each, {REPEATS} runs, MB):")
    for label, values in peaks.items():
        print(f"  {label:32} {', '.join(f'{value / 2**20:.0f}' for value in values)}")
    without, with_bomb, with_large = peaks.values()
    print(f"  the bomb adds {(max(with_bomb) - min(without)) / 2**20:+.0f} MB at most to the worker's peak (budget 100 MB); "
          f"the decoded control adds {(min(with_large) - max(without)) / 2**20:+.0f} MB")


if __name__ == "__main__":
    main()
