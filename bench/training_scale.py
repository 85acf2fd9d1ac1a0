"""Peak memory and wall time of training on 60, 250, 1,000 and 3,000 good parts.

The sets are made from the dev set's 60 good toothbrush images by the line-camera augmentation
(`bench/generated_categories.py --scale`, written here when missing). Each training runs
`lineguard train` with the default recipe in its own process, one after another, watched every
0.2 s: its peak resident memory (children included) is read from /proc, and it is killed if it
passes `--memory-cap-gb`, so a leak fails the benchmark instead of taking the machine.

    .venv/bin/python bench/training_scale.py                     # 60 250 1000 3000
    .venv/bin/python bench/training_scale.py --counts 60 1000 --eval
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "data" / "mvtec_toothbrush"
WEIGHTS = REPO.parent / "shared" / "weights" / "vgg16_imagenet_features.pth"
LINEGUARD = Path(sys.executable).parent / "lineguard"


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants, from /proc."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pending += [int(child) for child in children]
    return total


def run_watched(command: list[str], cap_bytes: int, log_path: Path) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak RSS bytes) of `command`; killed above `cap_bytes`."""
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(process.pid))
            if peak > cap_bytes:
                process.kill()
                process.wait()
                print(f"  killed: resident memory passed the {cap_bytes / 2**30:.0f} GB cap", flush=True)
                break
            time.sleep(0.2)
    return process.returncode, time.monotonic() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[60, 250, 1000, 3000])
    parser.add_argument("--categories", type=Path, default=REPO / "runs" / "categories")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "scale")
    parser.add_argument("--memory-cap-gb", type=float, default=12.0)
    parser.add_argument("--eval", action="store_true", help="also evaluate each model on the dev set's test images")
    parser.add_argument("train_options", nargs="*", help="extra `lineguard train` options, after --")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    missing = [n for n in args.counts if n != 60 and not (args.categories / f"toothbrush-{n}").is_dir()]
    if missing:
        subprocess.run(
            [sys.executable, str(REPO / "bench" / "generated_categories.py"), "--out", str(args.categories), "--scale", *map(str, missing)],
            check=True,
        )
    rows = []
    for count in args.counts:
        data = DEV_SET if count == 60 else args.categories / f"toothbrush-{count}"
        checkpoint = args.runs / f"toothbrush-{count}.pt"
        command = [str(LINEGUARD), "train", str(data), "--out", str(checkpoint), "--teacher-weights", str(WEIGHTS), *args.train_options]
        print(f"training on {count} good images ...", flush=True)
        code, seconds, peak = run_watched(command, int(args.memory_cap_gb * 2**30), args.runs / f"toothbrush-{count}.log")
        row = {"images": count, "exit": code, "wall_s": round(seconds), "peak_rss_gb": round(peak / 2**30, 2)}
        if code == 0 and args.eval:
            report = args.runs / f"toothbrush-{count}-report"
            subprocess.run([str(LINEGUARD), "eval", str(checkpoint), str(DEV_SET), "--report", str(report), "--no-progress"], check=True, capture_output=True)
            metrics = json.loads((report / "metrics.json").read_text())
            row.update({key: round(metrics[key], 3) for key in ("image_auroc", "pixel_auroc", "false_reject_rate", "defect_recall")})
        rows.append(row)
        print(f"  {row}", flush=True)
    print()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(column, "")) for column in columns) + " |")


if __name__ == "__main__":
    main()
