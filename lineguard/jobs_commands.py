"""`lineguard jobs`: the failed scoring jobs of the queue, listed, run again or dropped (see wire.failed_jobs)."""

from __future__ import annotations

import argparse
import json

from lineguard.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    jobs = commands.add_parser("jobs", help="failed scoring jobs: list, retry, drop")
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    failed = actions.add_parser("failed", help="list the failed jobs: when, which lines, how many frames, why")
    failed.add_argument("--line", help="only jobs with frames of this line")
    failed.add_argument("--json", action="store_true", help="one JSON object per line")
    failed.set_defaults(handler=run_failed)
    for name, verb in (("retry", "put back on the queue, with their retries"), ("drop", "delete, with their frame bytes")):
        action = actions.add_parser(name, help=f"failed jobs to {verb}")
        chosen = action.add_mutually_exclusive_group(required=True)
        chosen.add_argument("job_ids", nargs="*", default=[], metavar="JOB_ID", help="jobs named by `lineguard jobs failed`")
        chosen.add_argument("--all", action="store_true", help="every failed job (of --line, when given)")
        action.add_argument("--line", help="with --all: only jobs with frames of this line")
        action.set_defaults(handler=run_retry if name == "retry" else run_drop)


def run_failed(args: argparse.Namespace) -> int:
    from wire.failed_jobs import failed_jobs

    settings = Settings.from_environment()
    with _redis(settings) as redis:
        jobs = failed_jobs(redis, settings.queue_name, args.line)
    for job in jobs:
        if args.json:
            print(json.dumps(job.to_json()))
            continue
        when = job.failed_at.strftime("%Y-%m-%d %H:%M:%S") if job.failed_at else "?"
        letters = "dead letters pending" if job.dead_letters is None else f"{job.dead_letters} dead letters"
        print(f"{job.job_id}  {when}  {','.join(job.lines) or '-'}  {job.frames} frames, {letters}  {job.error}")
    if not args.json:
        print(f"{len(jobs)} failed jobs" + (f" with frames of line {args.line}" if args.line else ""))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    from wire.failed_jobs import retry_failed_jobs

    return _act(args, retry_failed_jobs, "put back on the queue")


def run_drop(args: argparse.Namespace) -> int:
    from wire.failed_jobs import drop_failed_jobs

    return _act(args, drop_failed_jobs, "dropped")


def _act(args: argparse.Namespace, action, done: str) -> int:  # noqa: ANN001 - one of wire.failed_jobs' actions
    from wire.failed_jobs import failed_jobs

    if args.line and not args.all:
        raise ValueError("--line chooses jobs with --all; named jobs are taken as named")
    settings = Settings.from_environment()
    with _redis(settings) as redis:
        job_ids = [job.job_id for job in failed_jobs(redis, settings.queue_name, args.line)] if args.all else args.job_ids
        acted = action(redis, settings.queue_name, job_ids)
    print(f"{len(acted)} failed jobs {done}")
    return 0


def _redis(settings: Settings):  # noqa: ANN202 - a Redis connection, closed by the with block
    from contextlib import closing

    from lineguard.services import connect_redis

    return closing(connect_redis(settings))
