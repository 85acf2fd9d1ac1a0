"""Where a training step's time goes, on this CPU: the teacher's features for one batch, and the
student's forward and backward pass with the optimiser step, as `model.training.train_student`
runs them (default recipe, 256 px, batch 8), in the layout training uses today, in torch's
contiguous layout and in channels-last.

A 1,000-step training is about 1,000 student steps plus a teacher pass per batch of views every
`feature_reuse` (4) steps, so these figures say how long a training takes on a CPU before one runs,
and whether a layout or a precision would shorten it.

    .venv/bin/python bench/training_step.py [--precisions fp32 bf16] [--layouts as_trained channels_last] [--steps 5] [--recipe '{"image_size": 384}'] [--profile]

With --profile it also prints torch's profile of two fp32 steps as trained (teacher batch included),
by operator.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from model.devices import autocast
from model.geometry import to_network_input
from model.loss import distillation_loss
from model.recipe import Recipe, TrainingSettings
from model.scoring import TeacherStudent

# "as_trained": the input as `to_network_input` gives it (a permuted view of (B,H,W,3) pixels, so
# channels-last strides) and the networks' weights as built, which is what training runs today.
LAYOUTS = {"as_trained": None, "contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def timed_steps(network: TeacherStudent, views: np.ndarray, layout: torch.memory_format | None, precision: str, steps: int) -> dict:
    """Median seconds of the teacher's batch, the student's forward and its backward + optimiser step."""
    device = torch.device("cpu")
    if layout is not None:
        network.to(memory_format=layout)
    student = network.student.train()
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-3)
    teacher, forward, backward = [], [], []
    for _ in range(steps + 1):  # the first call picks oneDNN's kernels and is not counted
        inputs = to_network_input(list(views), device)
        if layout is not None:
            inputs = inputs.contiguous(memory_format=layout)
        started = time.perf_counter()
        with torch.no_grad(), autocast(device, precision):
            targets = [f.to(torch.bfloat16) for f in network.teacher_targets(inputs)]
        taught = time.perf_counter()
        with autocast(device, precision):
            predictions, _ = student.predictions(inputs)
            loss = distillation_loss(targets, predictions, 1.0, 1.0, network.recipe.discrepancy)
        predicted = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        finished = time.perf_counter()
        teacher.append(taught - started), forward.append(predicted - taught), backward.append(finished - predicted)
    return {name: float(np.median(values[1:])) for name, values in (("teacher", teacher), ("forward", forward), ("backward", backward))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="{}", help="recipe fields over the default, as JSON")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also profile two fp32 steps as trained (the first one warms up), by operator")
    args = parser.parse_args()
    torch.manual_seed(0)
    recipe = Recipe(**json.loads(args.recipe))
    recipe = recipe.model_copy(update={"input_shape": recipe.input_shape or (recipe.image_size, recipe.image_size)})
    settings = TrainingSettings()
    views = np.random.default_rng(0).integers(0, 256, (settings.batch_size, *recipe.input_shape, 3), dtype=np.uint8)
    print(f"threads {torch.get_num_threads()}, input {recipe.input_shape}, batch {settings.batch_size}, feature reuse {settings.feature_reuse}")
    print("precision  layout         teacher s  student fwd s  bwd+step s  s/step  1,000 steps, min")
    for precision in args.precisions:
        for layout_name in args.layouts:
            t = timed_steps(TeacherStudent(recipe), views, LAYOUTS[layout_name], precision, args.steps)
            per_step = t["forward"] + t["backward"] + t["teacher"] / settings.feature_reuse
            print(
                f"{precision:9}  {layout_name:13}  {t['teacher']:9.2f}  {t['forward']:13.2f}  {t['backward']:10.2f}"
                f"  {per_step:6.2f}  {per_step * 1000 / 60:16.1f}"
            )
    if args.profile:
        network = TeacherStudent(recipe)  # built outside the profile: its initialisation is not a step's
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            timed_steps(network, views, LAYOUTS["as_trained"], "fp32", 1)
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
