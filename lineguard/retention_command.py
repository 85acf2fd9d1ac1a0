"""`lineguard retention`: forget old rows, events, ledgers and artifacts (see store.retention)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from lineguard.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    retention = commands.add_parser(
        "retention", help="remove inspections, source events, settled ledgers, sent verdicts and artifacts by age, and artifacts over a size"
    )
    retention.add_argument("--older-than-days", type=float, help="remove what is older than this many days")
    retention.add_argument("--max-artifacts-gb", type=float, help="then remove the oldest artifacts until the rest weigh at most this")
    retention.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    retention.set_defaults(handler=run_retention)


def run_retention(args: argparse.Namespace) -> int:
    from lineguard.services import open_artifacts, open_store
    from store.retention import RetentionPolicy, apply_retention

    if args.older_than_days is None and args.max_artifacts_gb is None:
        raise ValueError("say what to remove: --older-than-days DAYS and/or --max-artifacts-gb GB")
    settings = Settings.from_environment()
    policy = RetentionPolicy(
        max_age=None if args.older_than_days is None else timedelta(days=args.older_than_days),
        max_artifact_bytes=None if args.max_artifacts_gb is None else int(args.max_artifacts_gb * 1024**3),
        outbox_sinks=settings.outbox_sinks,
    )
    engine = open_store(settings)
    try:
        report = apply_retention(engine, open_artifacts(settings), policy, now=datetime.now(UTC), dry_run=args.dry_run)
    finally:
        engine.dispose()
    print(report.summary())
    return 0
