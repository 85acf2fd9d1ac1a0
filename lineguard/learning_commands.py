"""`lineguard models recalibrate|rollback|history`: a line's model learns from its reviews, and every
change of a line's model is one recorded action (see lineguard.recalibration, store.registry)."""

from __future__ import annotations

import argparse
import getpass
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lineguard.settings import Settings

# A time span back from now: a number and a unit (m minutes, h hours, d days, w weeks).
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register_model_actions(actions: argparse._SubParsersAction) -> None:
    """Add the learning actions to the `models` command's sub-commands."""
    recalibrate = actions.add_parser(
        "recalibrate", help="a new version of a line's model with a threshold from the line's own reviewed and passed parts"
    )
    recalibrate.add_argument("--line", required=True)
    recalibrate.add_argument("--since", type=parse_since, help="only parts since WHEN: an ISO date or time (UTC), or a span such as 7d, 12h")
    recalibrate.add_argument("--rate", type=float, help="stated false-reject rate (default: the active model's)")
    recalibrate.add_argument("--out", type=Path, help="checkpoint file to write (default: <version>.pt beside the active model's)")
    recalibrate.add_argument("--activate", action="store_true", help="make it the line's model now (default: only register it)")
    recalibrate.add_argument("--by", help="who decides (default: the login name)")
    recalibrate.set_defaults(handler=run_recalibrate)

    retrain = actions.add_parser(
        "retrain", help="train a candidate for a line on the original good images plus the line's false alarms and passed parts"
    )
    retrain.add_argument("--line", required=True)
    retrain.add_argument("--data", type=Path, help="the original good images (default: the folder recorded in the active checkpoint)")
    retrain.add_argument("--extra", type=Path, action="append", default=[], help="another folder of good images (repeatable)")
    retrain.add_argument("--passed", type=int, default=500, help="most recent passed parts (with a kept picture) to add (default 500)")
    retrain.add_argument("--steps", type=int, help="optimiser steps (default: as `lineguard train`)")
    retrain.add_argument("--out", type=Path, help="checkpoint to write (default: beside the active model's)")
    retrain.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    retrain.add_argument("--no-progress", action="store_true", help="no progress bars")
    retrain.add_argument("--queue", action="store_true", help="queue it for `lineguard worker --train` instead of training here")
    retrain.add_argument("--by", help="who asks (default: the login name)")
    retrain.set_defaults(handler=run_retrain)

    compare = actions.add_parser(
        "compare", help="score a candidate and a line's active model on the line's reviewed and recent passed parts"
    )
    compare.add_argument("version", help="candidate model version (registered)")
    compare.add_argument("--line", required=True)
    compare.add_argument("--recent", type=int, default=200, help="recent passed parts (with a kept picture) to score besides the reviewed ones (default 200)")
    compare.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    compare.add_argument("--json", action="store_true", help="print JSON instead of text")
    compare.set_defaults(handler=run_compare)

    shadow = actions.add_parser(
        "shadow", help="make workers also score a line's live frames with a candidate, kept apart (never the verdict)"
    )
    shadow.add_argument("version", nargs="?", help="candidate model version (registered); omit with --stop")
    shadow.add_argument("--line", required=True)
    shadow.add_argument("--stop", action="store_true", help="stop shadowing on the line (its results stay)")
    shadow.add_argument("--by", help="who decides (default: the login name)")
    shadow.set_defaults(handler=run_shadow)

    rollback = actions.add_parser("rollback", help="undo a line's latest model change: back to the version it had before")
    rollback.add_argument("--line", required=True)
    rollback.add_argument("--reason", help="why, kept in the line's history")
    rollback.add_argument("--by", help="who decides (default: the login name)")
    rollback.set_defaults(handler=run_rollback)

    history = actions.add_parser("history", help="every change of a line's model: when, to and from which version, who, why")
    history.add_argument("--line", help="one line (default: all)")
    history.add_argument("--json", action="store_true", help="print JSON instead of text")
    history.set_defaults(handler=run_history)


def actor(given: str | None) -> str:
    """Who a recorded action is by: the name given, else the login name."""
    return given if given is not None else getpass.getuser()


def parse_since(text: str) -> datetime:
    """`--since`: an ISO date or date-time (UTC when it names no zone), or a span back from now."""
    span = _SPAN.fullmatch(text.strip())
    if span:
        return datetime.now(UTC) - timedelta(**{_SPAN_UNITS[span.group(2)]: float(span.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO date or time nor a span such as 7d or 12h") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def run_recalibrate(args: argparse.Namespace) -> int:
    from lineguard.recalibration import plan_recalibration, save_recalibration
    from lineguard.registration import register_checkpoint
    from lineguard.services import open_store
    from store.artifacts import open_artifact_store

    engine = open_store(Settings.from_environment())
    try:
        plan = plan_recalibration(engine, args.line, args.since, args.rate)
        base, calibration = plan.base, plan.calibration
        print(
            f"line {args.line}: model {base.version} recalibrated on {plan.parts} of the line's parts "
            f"({plan.passed} passed, {plan.false_alarms} reviewed as false alarms)"
        )
        if plan.unreviewed_flags:
            print(f"  {plan.unreviewed_flags} flagged parts await review and were left out (they can only lower the threshold)")
        print(
            f"new threshold {calibration.threshold:.4g} (was {base.calibration['threshold']:.4g}): "
            f"flags about {calibration.false_reject_rate:.1%} of good parts ({calibration.bound} bound)"
        )
        print("on the line's reviewed parts, the new threshold would have:")
        for label, frames in (
            ("passed these false alarms", plan.false_alarms_passed),
            ("still flagged these false alarms", plan.false_alarms_flagged),
            ("still flagged these confirmed defects", plan.defects_flagged),
            ("MISSED these confirmed defects", plan.defects_missed),
        ):
            print(f"  {label} ({len(frames)}): {', '.join(frames) or '-'}")
        version, path = save_recalibration(plan, args.out)
        reason = f"recalibrated on {plan.parts} parts of line {args.line}"
        artifacts = open_artifact_store(Settings.from_environment().artifacts_url)  # the report's pictures, as for its base
        register_checkpoint(engine, path, args.line if args.activate else None, by=actor(args.by), reason=reason, artifacts=artifacts)
    finally:
        engine.dispose()
    print(f"registered model {version} ({path})")
    if args.activate:
        print(f"line {args.line} now scores with {version}; running workers switch within their model refresh time")
    else:
        print(f"activate it with: lineguard models activate {version} --line {args.line}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from lineguard.retraining import MIN_LINE_CALIBRATION, default_candidate_path, gather_training_data, retrain
    from lineguard.services import open_artifacts, open_store
    from model.recipe import TrainingSettings
    from store.records import active_model_info

    settings = Settings.from_environment()
    if args.queue:
        return _queue_retraining(settings, args)
    engine = open_store(settings)
    try:
        base = active_model_info(engine, args.line)
        out = args.out or default_candidate_path(base, args.line)
        # The training folder stays beside the candidate: it is what the checkpoint names as trained on.
        staging = out.with_name(out.stem + ".data")
        data = gather_training_data(engine, open_artifacts(settings), base, args.line, staging, args.data, args.extra, args.passed)
        print(
            f"training a candidate for line {args.line} ({base.version}'s recipe) on {data.original_images} original good images "
            f"({data.original_folder}), {data.false_alarms} false alarms, {data.passed_parts} passed parts"
            + (f", {data.extra_images} extra images" if data.extra_images else "")
            + (
                f"; {data.calibration_parts} more line pictures held out for its threshold"
                if data.calibration_parts
                else f"; threshold from its training folder (a threshold from the line needs {MIN_LINE_CALIBRATION} line pictures)"
            )
        )
        training = TrainingSettings(device=args.device, **({"steps": args.steps} if args.steps else {}))
        result = retrain(engine, base, data, out, training, progress=not args.no_progress)
    finally:
        engine.dispose()
    print(f"registered candidate {result.version} ({out}), threshold {result.threshold:.4g}, trained in {result.seconds:.0f} s")
    print(f"compare it with: lineguard models compare {result.version} --line {args.line}")
    return 0


def _queue_retraining(settings: Settings, args: argparse.Namespace) -> int:
    from lineguard.services import connect_redis
    from wire.training_jobs import TrainingRequest, queue_training

    redis = connect_redis(settings)
    try:
        request = TrainingRequest(
            line=args.line, requested_by=actor(args.by), data=str(args.data) if args.data else None,
            extra=[str(folder) for folder in args.extra], steps=args.steps,
        )
        job_id = queue_training(redis, request)
    finally:
        redis.close()
    print(f"queued training job {job_id} for line {args.line}; `lineguard worker --train` runs it, the Models page shows its progress")
    return 0


def run_training_worker_command(args: argparse.Namespace) -> int:
    """`lineguard worker --train`: run queued training jobs until stopped (with --burst, until none wait)."""
    import os
    import socket

    from lineguard.services import connect_redis, open_artifacts, open_store
    from lineguard.signals import stop_on_signals
    from worker.training import run_training_worker

    settings = Settings.from_environment()
    redis = connect_redis(settings)
    engine = open_store(settings)
    try:
        with stop_on_signals() as stop:
            name = args.name or f"{socket.gethostname()}.{os.getpid()}"
            ran = run_training_worker(redis, engine, open_artifacts(settings), name, args.device, stop, burst=args.burst)
    finally:
        engine.dispose()
        redis.close()
    print(f"ran {ran} training job(s)")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from lineguard.comparison import compare_models
    from wire.comparisons import comparison_key
    from lineguard.services import open_artifacts, open_store

    settings = Settings.from_environment()
    engine = open_store(settings)
    artifacts = open_artifacts(settings)
    try:
        comparison = compare_models(engine, artifacts, args.line, args.version, args.device, args.recent)
    finally:
        engine.dispose()
    document = comparison.to_json()
    # Kept for the Models page, which shows the latest comparison of each candidate.
    artifacts.put(comparison_key(args.line, args.version), json.dumps(document).encode())
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    rescored = comparison.parts - comparison.active_live
    print(
        f"line {args.line}: {comparison.parts} parts; the candidate scored their stored pictures, the active model's verdicts "
        f"are the line's live ones" + (f" ({rescored} rescored from pictures: scored by older weights)" if rescored else "")
    )
    print(f"{'':32}{'active':>24}{'candidate':>24}")
    active, candidate = comparison.active, comparison.candidate
    rows = (
        ("version", active.version, candidate.version),
        ("defects caught", f"{active.defects_caught}/{active.defects}", f"{candidate.defects_caught}/{candidate.defects}"),
        ("false alarms on good parts", f"{active.false_alarms}/{active.good_parts}", f"{candidate.false_alarms}/{candidate.good_parts}"),
        ("stated false-reject rate", f"{active.stated_false_reject_rate:.1%}", f"{candidate.stated_false_reject_rate:.1%}"),
        ("ms per frame", f"{active.ms_per_frame:.1f}", f"{candidate.ms_per_frame:.1f}"),
    )
    for label, left, right in rows:
        print(f"{label:32}{left:>24}{right:>24}")
    for label, changes in (("now flagged", comparison.now_flagged), ("now passed", comparison.now_passed)):
        shown = ", ".join(f"{frame_id} ({kind})" for frame_id, kind in changes.items()) or "-"
        print(f"{label} by the candidate ({len(changes)}): {shown}")
    if comparison.unreadable:
        print(f"{len(comparison.unreadable)} pictures could not be read: {'; '.join(comparison.unreadable[:5])}")
    return 0


def run_shadow(args: argparse.Namespace) -> int:
    from lineguard.services import open_store
    from store.records import shadow_agreement, start_shadow, stop_shadow

    if args.stop == bool(args.version):
        raise ValueError("give a candidate VERSION to shadow, or --stop (not both)")
    engine = open_store(Settings.from_environment())
    try:
        if args.stop:
            stopped = stop_shadow(engine, args.line)
            print(f"line {args.line}: shadow stopped" if stopped else f"line {args.line} had no shadow")
            return 0
        start_shadow(engine, args.line, args.version, by=actor(args.by))
        agreement = shadow_agreement(engine, args.line, args.version)
    finally:
        engine.dispose()
    print(
        f"workers on line {args.line} also score with {args.version} within their model refresh time; "
        f"its verdicts are kept apart ({agreement.frames} so far) and shown on the Models page"
    )
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from lineguard.services import open_store
    from store.records import rollback_model

    engine = open_store(Settings.from_environment())
    try:
        activation = rollback_model(engine, args.line, by=actor(args.by), reason=args.reason)
    finally:
        engine.dispose()
    print(
        f"line {args.line} now scores with {activation.model_version} again (was {activation.previous_version}); "
        "running workers switch within their model refresh time"
    )
    return 0


def run_history(args: argparse.Namespace) -> int:
    from lineguard.services import open_store
    from store.records import activation_history

    engine = open_store(Settings.from_environment())
    try:
        activations = activation_history(engine, args.line)
    finally:
        engine.dispose()
    if args.json:
        rows = [{**asdict(activation), "activated_at": activation.activated_at.isoformat()} for activation in activations]
        print(json.dumps(rows, indent=2))
        return 0
    if not activations:
        print("no model activations recorded" + (f" for line {args.line}" if args.line else ""))
    for activation in activations:
        came_from = f" from {activation.previous_version}" if activation.previous_version else ""
        why = f": {activation.reason}" if activation.reason else ""
        print(
            f"{activation.activated_at:%Y-%m-%d %H:%M:%S} UTC  {activation.line}  {activation.model_version}{came_from}  "
            f"by {activation.activated_by}{why}"
        )
    return 0
