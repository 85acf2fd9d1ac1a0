"""The device check, for a lent GPU machine: everything the CPU-only CI cannot show, in one call.

1. the network alone: `bench/model_throughput.py`'s table on CUDA (teacher vs full model, fp32 vs
   bf16, batch 1, 8, 32), and the full model under `torch.compile` against eager at bf16;
2. decode plus network: 640x480 JPEG frames decoded and fitted on the host (OpenCV, a worker's
   `--decode-on-device off`) and on the device (nvJPEG, `model.device_images`, the worker's default
   on CUDA), then scored, images/s;
3. frames in flight: 1, 2 and 4 scoring threads per GPU, each on its own CUDA stream, as several
   worker processes per GPU would keep it busy (the line's queue and store are measured apart by
   bench/capacity.py: a device machine has no Redis or PostgreSQL);
4. training speed at the default recipe with fresh teacher features every step (`feature_reuse`
   1) and with the CPU default (4), steps/s and peak GPU memory;
5. the same model's scores on CUDA and on the CPU (raw scores within SCORE_TOLERANCE and the same
   verdicts), and with device-decoded frames against the worker's DEVICE_DECODE_TOLERANCE.
It needs no data from ../shared (generated parts) and downloads nothing (a random teacher: same
speed). Sized for at most 8 minutes on an H200 (sections print as they finish).

On the device machine, from the repository root (pydantic is not in its image: carry it as
wheels, see the device tool's README):

    python3 bench/gpu_check.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.checkpoint import load_checkpoint  # noqa: E402
from model.device_images import batch_on_device, decode_on_device  # noqa: E402
from worker.defaults import DEVICE_DECODE_TOLERANCE  # noqa: E402
from model.devices import autocast  # noqa: E402
from model.geometry import FittedImage  # noqa: E402
from model.images import decode_image  # noqa: E402
from model.recipe import Recipe, TrainingSettings  # noqa: E402
from model.synthetic import defective_part, good_part  # noqa: E402
from model.training import train  # noqa: E402

TRAINING_PARTS = 64
TRAINING_STEPS = 200
FRAMES = 256
BATCH = 32
SECONDS = 6.0
# CUDA and the CPU sum in other orders (and device decoding scales with another filter): raw
# scores may differ by this share, verdicts not at all.
SCORE_TOLERANCE = 0.01


def write_parts(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(TRAINING_PARTS):
        cv2.imwrite(str(folder / f"{index:03d}.png"), cv2.cvtColor(good_part(size, rng), cv2.COLOR_RGB2BGR))


def jpeg_frames(count: int) -> list[bytes]:
    rng = np.random.default_rng(2)
    frames = []
    for index in range(count):
        part = defective_part(480, rng)[0] if index % 10 == 0 else good_part(480, rng)
        frames.append(cv2.imencode(".jpg", cv2.cvtColor(cv2.resize(part, (640, 480)), cv2.COLOR_RGB2BGR))[1].tobytes())
    return frames


def rate(run, images_per_call: int) -> float:
    run()
    torch.cuda.synchronize()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS or calls < 3:
        run()
        calls += 1
    torch.cuda.synchronize()
    return calls * images_per_call / (time.perf_counter() - started)


def compile_check(model) -> None:
    batch, fitted = model.prepare([good_part(model.recipe.input_shape[0], np.random.default_rng(3))] * BATCH)
    eager = rate(lambda: model.maps_and_scores(batch, fitted), BATCH)
    compiled_maps = torch.compile(model.network.anomaly_maps)
    started = time.perf_counter()
    with torch.inference_mode(), autocast(model.device, model.precision):
        compiled_maps(batch)
    compile_seconds = time.perf_counter() - started

    def compiled() -> None:
        with torch.inference_mode(), autocast(model.device, model.precision):
            compiled_maps(batch)

    print(f"torch.compile, bf16 batch {BATCH}: eager {eager:.0f} img/s, compiled {rate(compiled, BATCH):.0f} img/s "
          f"(compiling took {compile_seconds:.0f} s)", flush=True)


def decode_check(model, frames: list[bytes]) -> None:
    height, width = model.recipe.input_shape
    names = [f"frame {i}" for i in range(len(frames))]

    def host() -> None:
        for start in range(0, len(frames), BATCH):
            model.maps_and_scores(*model.prepare([decode_image(blob) for blob in frames[start : start + BATCH]]))

    def device() -> None:
        for start in range(0, len(frames), BATCH):
            images = decode_on_device(frames[start : start + BATCH], names[start : start + BATCH], model.device)
            batch, contents = batch_on_device(images, height, width)
            model.maps_and_scores(batch, [FittedImage(None, h, w) for h, w in contents])

    print(f"decode + network, 640x480 JPEG, batch {BATCH}: host decode {rate(host, len(frames)):.0f} img/s, "
          f"device decode {rate(device, len(frames)):.0f} img/s", flush=True)


def in_flight_check(checkpoint: Path) -> None:
    for threads in (1, 2, 4):
        models = [load_checkpoint(checkpoint, device="cuda", precision="bf16") for _ in range(threads)]
        size = models[0].recipe.input_shape[0]
        prepared = [model.prepare([good_part(size, np.random.default_rng(4))] * BATCH) for model in models]
        done = [0] * threads
        stop = threading.Event()

        def score(index: int) -> None:
            with torch.cuda.stream(torch.cuda.Stream()):
                while not stop.is_set():
                    models[index].maps_and_scores(*prepared[index])
                    done[index] += BATCH

        workers = [threading.Thread(target=score, args=(i,)) for i in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(SECONDS)
        stop.set()
        for worker in workers:
            worker.join()
        torch.cuda.synchronize()
        print(f"{threads} scoring thread(s) on one GPU, bf16 batch {BATCH}: {sum(done) / (time.perf_counter() - started):.0f} img/s", flush=True)


def agreement_check(checkpoint: Path, frames: list[bytes]) -> None:
    images = [decode_image(blob) for blob in frames[:16]]
    for precision in ("fp32", "bf16"):
        gpu_model = load_checkpoint(checkpoint, device="cuda", precision=precision)
        on_gpu = gpu_model.score_images(images)
        on_cpu = load_checkpoint(checkpoint, device="cpu", precision=precision).score_images(images)
        worst = max(abs(a.raw_score - b.raw_score) / abs(b.raw_score) for a, b in zip(on_gpu, on_cpu))
        same = all(a.is_anomaly == b.is_anomaly for a, b in zip(on_gpu, on_cpu))
        verdict = "ok" if worst <= SCORE_TOLERANCE and same else "DIFFERENT"
        print(f"{precision}: CUDA vs CPU raw scores differ by at most {worst:.2%}; same verdicts: {same} ({verdict})", flush=True)
    decoded = decode_on_device(frames[:16], [str(i) for i in range(16)], gpu_model.device)
    device_scores = np.array([result.raw_score for result in gpu_model.score_decoded(decoded)])
    host_scores = np.array([result.raw_score for result in on_gpu])
    worst = float(np.max(np.abs(device_scores - host_scores) / np.abs(host_scores)))
    of_threshold = float(np.max(np.abs(device_scores - host_scores)) / abs(gpu_model.calibration.threshold))
    verdict = "the worker would trust it" if of_threshold <= DEVICE_DECODE_TOLERANCE else "the worker would decode on the host"
    print(
        f"bf16, device-decoded (nvJPEG, model.device_images) vs host-decoded frames: raw scores differ by at most {worst:.2%} "
        f"({of_threshold:.2%} of the threshold, tolerance {DEVICE_DECODE_TOLERANCE:.0%}: {verdict})", flush=True,
    )


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    began = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    subprocess.run([sys.executable, str(REPO / "bench" / "model_throughput.py"), "--batch-sizes", "1,8,32", "--min-seconds", "2"], check=True)

    recipe = Recipe()
    frames = jpeg_frames(FRAMES)
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

        model = load_checkpoint(checkpoints[1], device="cuda", precision="bf16")
        decode_check(model, frames)
        in_flight_check(checkpoints[1])
        agreement_check(checkpoints[1], frames)
        compile_check(model)
    print(f"gpu_check done in {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
