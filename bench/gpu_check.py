"""The short device check, for a lent GPU machine: everything the CPU-only CI cannot show.

1. `bench/model_throughput.py`'s table on CUDA (teacher alone vs the full model, fp32 vs bf16);
2. training speed on CUDA at the default recipe, with fresh teacher features every step
   (`feature_reuse` 1) and with the CPU default (4), and the peak GPU memory of each;
3. the same briefly trained model scored on CUDA and on the CPU: the scores must agree.
It needs no data from ../shared (generated parts; speed does not depend on their content) and
downloads nothing (a random teacher: same speed). About 3 minutes on an H200.

On the device machine, from the repository root (pydantic is not in its image: carry it as
wheels, see the device tool's README):

    python3 bench/gpu_check.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.checkpoint import load_checkpoint  # noqa: E402
from model.recipe import Recipe, TrainingSettings  # noqa: E402
from model.synthetic import defective_part, good_part  # noqa: E402
from model.training import train  # noqa: E402

TRAINING_PARTS = 64
TRAINING_STEPS = 200


def write_parts(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(TRAINING_PARTS):
        cv2.imwrite(str(folder / f"{index:03d}.png"), cv2.cvtColor(good_part(size, rng), cv2.COLOR_RGB2BGR))


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    subprocess.run([sys.executable, str(REPO / "bench" / "model_throughput.py"), "--batch-sizes", "1,8,32", "--min-seconds", "2"], check=True)

    recipe = Recipe()
    with tempfile.TemporaryDirectory() as workdir:
        parts = Path(workdir) / "parts"
        write_parts(parts, recipe.image_size)
        checkpoints = {}
        print(f"\ntraining {TRAINING_STEPS} steps on {TRAINING_PARTS} generated parts, CUDA, default recipe", flush=True)
        for reuse in (1, 4):
            torch.cuda.reset_peak_memory_stats()
            settings = TrainingSettings(steps=TRAINING_STEPS, feature_reuse=reuse, device="cuda", seed=0)
            checkpoint = Path(workdir) / f"reuse{reuse}.pt"
            started = time.perf_counter()
            train(parts, checkpoint, recipe, settings, "random", progress=False)
            seconds = time.perf_counter() - started
            print(
                f"feature_reuse {reuse}: {seconds:.1f} s in all, {TRAINING_STEPS / seconds:.1f} steps/s, "
                f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB",
                flush=True,
            )
            checkpoints[reuse] = checkpoint

        rng = np.random.default_rng(1)
        images = [good_part(recipe.image_size, rng) for _ in range(4)] + [defective_part(recipe.image_size, rng)[0] for _ in range(4)]
        for precision in ("fp32", "bf16"):
            on_gpu = load_checkpoint(checkpoints[1], device="cuda", precision=precision).score_images(images)
            on_cpu = load_checkpoint(checkpoints[1], device="cpu", precision=precision).score_images(images)
            worst = max(abs(a.raw_score - b.raw_score) / abs(b.raw_score) for a, b in zip(on_gpu, on_cpu))
            same = all(a.is_anomaly == b.is_anomaly for a, b in zip(on_gpu, on_cpu))
            print(f"{precision}: CUDA vs CPU raw scores differ by at most {worst:.2%}; same verdicts: {same}", flush=True)


if __name__ == "__main__":
    main()
