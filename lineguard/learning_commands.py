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
        register_checkpoint(engine, path, args.line if args.activate else None, by=actor(args.by), reason=reason)
    finally:
        engine.dispose()
    print(f"registered model {version} ({path})")
    if args.activate:
        print(f"line {args.line} now scores with {version}; running workers switch within their model refresh time")
    else:
        print(f"activate it with: lineguard models activate {version} --line {args.line}")
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
