"""`lineguard review`: a person's verdict on parts by frame id, the same rows as the Review page.

For scripts, a line's own HMI and tests; reviews are what `lineguard models recalibrate` learns from.
"""

from __future__ import annotations

import argparse
import getpass

from lineguard.settings import Settings
from store.schema import CONFIRMED_REVIEW

#: The verdicts a person gives on the command line, and the review verdict each is stored as.
REVIEW_CHOICES = {"defect": CONFIRMED_REVIEW, "false_alarm": "false_alarm"}


def register(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser(
        "review", help="record a person's verdict on parts by frame id (as the dashboard's Review page does)"
    )
    review.add_argument("frame_ids", nargs="+", metavar="FRAME_ID", help="frame ids of the parts (see the dashboard or `status`)")
    review.add_argument(
        "--verdict", required=True, choices=sorted(REVIEW_CHOICES),
        help="defect: the part is defective; false_alarm: the part is good though the model flagged it",
    )
    review.add_argument("--note", help="what the reviewer saw")
    review.add_argument("--reviewer", help="who reviewed (default: the login name)")
    review.set_defaults(handler=run_review)


def run_review(args: argparse.Namespace) -> int:
    from lineguard.services import open_store
    from store.records import save_frame_reviews

    reviewer = args.reviewer if args.reviewer is not None else getpass.getuser()
    engine = open_store(Settings.from_environment())
    try:
        saved = save_frame_reviews(engine, args.frame_ids, REVIEW_CHOICES[args.verdict], args.note, reviewer)
    finally:
        engine.dispose()
    print(f"{len(saved)} part(s) reviewed as {args.verdict} by {reviewer}: {', '.join(saved)}")
    return 0
