"""`lineguard` command line: the thin front door that wires the packages together.

Each group of commands lives in its own module and registers its sub-commands here. Errors that
a user can act on are printed as one line and exit with status 2; with -v their traceback comes
first, so that a bug raising one of them (a ValueError, say) can still be found.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from lineguard import (
    dashboard_command,
    jobs_commands,
    line_commands,
    model_commands,
    relay_command,
    retention_command,
    review_command,
)

COMMAND_MODULES = (
    model_commands, line_commands, dashboard_command, relay_command, review_command, jobs_commands, retention_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lineguard", description="Streaming visual inspection for production lines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages; show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user, from every package the CLI wires."""
    from pydantic import ValidationError

    from ingest.errors import IngestError
    from lineguard.services import ServiceUnavailableError
    from model.errors import ModelError
    from relay.runner import RelayError
    from store.errors import StoreError
    from wire.connections import OutageInterrupted
    from worker.errors import WorkerError

    return (
        ModelError, RelayError, StoreError, IngestError, WorkerError, ServiceUnavailableError, OutageInterrupted,
        ValidationError, ValueError, FileNotFoundError,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.handler(args) or 0)
    except user_errors() as error:
        if args.verbose:
            traceback.print_exc()
        print(f"lineguard {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lineguard {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
