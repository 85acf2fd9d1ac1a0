"""Folder source: image files in a directory become frames, each file exactly once.

A run first takes the files already there (oldest first), then, when watching, polls for new ones.
A file is taken only once complete (size and mtime unchanged for `stable_seconds`) and only once
ever: it is claimed in the store, under the frame id it is published with, before it is read, so a
restart skips it. A claim is settled once its row exists; a claimed file whose frame was lost (Redis
forgot it, or the ingester died before sending it) is published again under the same frame id by
the next reconciliation pass (see ingest.ledgers): at the start and end of every run and every
`reconcile_interval_s` while watching. Only regular image files within a size limit are taken, and
read so that no special file is ever opened (see ingest.file_checks); every file skipped is counted
and recorded once per run as a source event.

Sent by reference (`by_reference`), a file is checked, opened and claimed alike but not read: its
path travels instead of its bytes, for workers that mount the folder at the same path and read it
inside their frame root (worker.references). Where the folder is on a shared volume, that spares
Redis the frames' bytes (bench/capacity.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine
from tqdm import tqdm

from ingest.cycle import SourceRun
from ingest.errors import FileSkippedError, SourceUnavailableError
from ingest.file_checks import (
    DEFAULT_MAX_FILE_BYTES,
    SKIP_REASONS,
    CheckedFile,
    check_file,
    open_checked,
    read_at_most,
    read_checked,
)
from ingest.frames import FileReference, Frame, check_stream_name, new_frame_id
from ingest.ledgers import FolderLedger
from ingest.publisher import Publisher
from store.records import (
    SKIPPED_FILE_KIND_PREFIX,
    UnsettledClaim,
    claim_ingested_file,
    record_source_events,
)
from wire.connections import OutageWaiter

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File name endings taken as images (compared without case): those of the formats the workers decode."""


_Outcome = Literal["published", "already_ingested", "vanished", "skipped"]


@dataclass
class FolderStats:
    """What one `FolderSource.run` did with the files it saw."""

    published: int = 0
    """Files handed to the publisher as frames."""
    already_ingested: int = 0
    """Files skipped because an earlier run had claimed them."""
    vanished: int = 0
    """Files that disappeared before they could be read."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Files not taken, by reason (see ingest.file_checks.SKIP_REASONS); each counted once per run."""
    republished: int = 0
    """Claimed files whose frames were lost, published again under their frame ids."""
    unsent: int = 0
    """Files claimed but not sent when a stop came at a full queue; the next run publishes them."""

    def summary(self) -> str:
        """One line for the CLI."""
        reasons = ", ".join(f"{self.skipped[reason]} {reason}" for reason in SKIP_REASONS if self.skipped[reason])
        return (
            f"{self.published} published, {self.already_ingested} already ingested, {self.vanished} vanished, "
            f"{self.skipped.total()} skipped{f' ({reasons})' if reasons else ''}, {self.republished} published again"
            + (f", {self.unsent} left for the next run (stopped at a full queue)" if self.unsent else "")
        )


class _StabilityTracker:
    """Tells which files kept the same size and mtime for `stable_seconds` of observation."""

    def __init__(self, stable_seconds: float) -> None:
        self._stable_seconds = stable_seconds
        self._first_seen: dict[Path, tuple[CheckedFile, float]] = {}

    def take_stable(self, listing: list[CheckedFile], now: float) -> list[CheckedFile]:
        """Observe `listing` at monotonic time `now`; return the files stable since, forget them.

        A file whose size or mtime changed starts its observation again; one no longer listed
        is forgotten.
        """
        observed: dict[Path, tuple[CheckedFile, float]] = {}
        stable: list[CheckedFile] = []
        for state in listing:
            earlier = self._first_seen.get(state.path)
            since = earlier[1] if earlier is not None and earlier[0] == state else now
            if now - since >= self._stable_seconds:
                stable.append(state)
            else:
                observed[state.path] = (state, since)
        self._first_seen = observed
        return stable

    @property
    def pending(self) -> int:
        """Files under observation, not yet stable."""
        return len(self._first_seen)

    def seconds_until_next_stable(self, now: float) -> float | None:
        """Seconds until the earliest observed file may be stable, or None when none is observed."""
        if not self._first_seen:
            return None
        earliest = min(since for _, since in self._first_seen.values())
        return max(0.0, earliest + self._stable_seconds - now)


def _version(state: CheckedFile) -> tuple[Path, int, float]:
    """What tells one version of a file from another: a file rewritten at its path is taken again."""
    return state.path, state.size, state.mtime


@dataclass
class _Scan:
    """What a run remembers of the files it looked at."""

    tracker: _StabilityTracker
    handled: set[tuple[Path, int, float]] = field(default_factory=set)
    """Versions of files taken (or found claimed) in this run."""
    refused: set[CheckedFile] = field(default_factory=set)
    """Files refused when opened or read; tried again only once they change."""
    reported: set[tuple[Path, str]] = field(default_factory=set)
    """Skipped files already counted and recorded in this run, so a watch records each once."""


class FolderSource:
    """Image files of one directory, as frames of one line and camera."""

    def __init__(
        self,
        directory: str | Path,
        line: str,
        camera: str,
        *,
        engine: Engine,
        recursive: bool = False,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        stable_seconds: float = 1.0,
        poll_interval_s: float = 1.0,
        reconcile_interval_s: float = 10.0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        by_reference: bool = False,
    ) -> None:
        """Describe the source; nothing is read until `run`.

        Args:
            directory: folder to take images from; must exist.
            line: production line of every frame.
            camera: camera of every frame.
            engine: store engine where files are claimed and source events recorded.
            recursive: also take files in subfolders.
            extensions: file name endings to take (any case); hidden files are never taken.
            stable_seconds: how long a file's size and mtime must stay unchanged before it is
                taken, so a file still being written is not published half-done.
            poll_interval_s: time between directory scans while watching.
            reconcile_interval_s: time between reconciliation passes while watching.
            max_file_bytes: larger files are skipped without being read.
            by_reference: send each file's path instead of its bytes (the folder must be on
                storage the workers share, mounted at the same path).
        """
        folder = Path(directory).expanduser().resolve()
        if not folder.is_dir():
            raise SourceUnavailableError(f"folder source {str(directory)!r} is not an existing directory")
        if stable_seconds < 0:
            raise ValueError(f"stable_seconds must be >= 0, got {stable_seconds}")
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        if reconcile_interval_s <= 0:
            raise ValueError(f"reconcile_interval_s must be > 0, got {reconcile_interval_s}")
        if not extensions:
            raise ValueError("extensions must name at least one file ending, e.g. ('.png',)")
        if max_file_bytes < 1:
            raise ValueError(f"max_file_bytes must be >= 1, got {max_file_bytes}")
        self.directory = folder
        self.line = check_stream_name("line", line)
        self.camera = check_stream_name("camera", camera)
        self.source = f"folder:{folder}"
        """Source label carried by every frame and source event."""
        self.source_key = f"folder:{folder}:{line}:{camera}"
        """Key under which files are claimed in the store: one claim per folder, line and camera."""
        self._engine = engine
        self._recursive = recursive
        self._extensions = tuple(ending.lower() for ending in extensions)
        self._stable_seconds = stable_seconds
        self._poll_interval_s = poll_interval_s
        self._reconcile_interval_s = reconcile_interval_s
        self._max_file_bytes = max_file_bytes
        self._by_reference = by_reference
        self._run: SourceRun | None = None

    def run(
        self,
        publisher: Publisher,
        *,
        watch: bool = False,
        stop_event: threading.Event | None = None,
        progress: bool = False,
    ) -> FolderStats:
        """Publish the folder's files (oldest first), then, if `watch`, new ones until `stop_event`.

        Without `watch`, returns once every file present has been taken (files still being
        written are waited for). Flushes `publisher` before returning; a stop while the queue is
        full leaves the unsent files claimed and unsettled, for the next run to publish.
        """
        run = SourceRun(
            self._engine, self.line, self.camera, self.source, stop_event=stop_event, reconcile_interval_s=self._reconcile_interval_s
        )
        self._run = run
        stats = FolderStats()
        scan = _Scan(_StabilityTracker(self._stable_seconds))
        ledger = FolderLedger(self._engine, self.source_key, run.waiters)
        with (
            run.running(
                publisher,
                ledger,
                reconcile=lambda: self._republish_lost(ledger, publisher, stats),
                started=f"{'backfill and watch' if watch else 'backfill'} of {self.directory}",
                summary=stats.summary,
                on_unsent=lambda frames: setattr(stats, "unsent", stats.unsent + len(frames)),
            ),
            tqdm(desc=f"{self.line}/{self.camera}", unit="file", disable=not progress) as bar,
        ):
            while not run.stopped:
                self._take_stable_files(scan, publisher, stats, bar)
                if not watch and scan.tracker.pending == 0:
                    break
                run.reconcile_if_due()
                publisher.idle(self._next_look_s(scan.tracker), run.stop)
        return stats

    def _take_stable_files(self, scan: _Scan, publisher: Publisher, stats: FolderStats, bar: tqdm) -> None:
        """One look at the folder: claim, read and publish each file that is newly stable (oldest first)."""
        found, skipped = self._list_files()
        listing = [state for state in found if _version(state) not in scan.handled and state not in scan.refused]
        bar.total = len(scan.handled) + len(listing)
        bar.refresh()
        stable = scan.tracker.take_stable(listing, time.monotonic())
        for state in sorted(stable, key=lambda state: (state.mtime, state.path.name)):
            if self._current_run().stopped:
                break
            outcome = self._ingest_file(state, publisher, stats, skipped)
            if outcome == "skipped":
                scan.refused.add(state)
            elif outcome != "vanished":
                scan.handled.add(_version(state))
                bar.update(1)
        self._report_skipped(skipped, scan.reported, stats)

    def _next_look_s(self, tracker: _StabilityTracker) -> float:
        """Seconds until the folder is looked at again: a poll interval, or less when a file is due to be stable."""
        next_stable = tracker.seconds_until_next_stable(time.monotonic())
        return self._poll_interval_s if next_stable is None else min(self._poll_interval_s, next_stable)

    def _republish_lost(self, ledger: FolderLedger, publisher: Publisher, stats: FolderStats) -> None:
        """One reconciliation pass: publish again, under their frame ids, the claimed files whose
        frames are neither in Redis nor in the store (nor in the publisher's buffer)."""
        lost = ledger.lost_claims(publisher.redis, publisher.buffered_frame_ids())
        vanished = [claim for claim in lost if not self._publish_claim(claim, publisher)]
        ledger.settle([claim.frame_id for claim in vanished], "vanished")
        for claim in vanished:
            self._record("error", f"claimed file {claim.path} was lost in the queue and is no longer a readable file; it cannot be published again")
        again = len(lost) - len(vanished)
        if again:
            stats.republished += again
            logger.warning("%s: publishing again %d claimed files whose frames were lost", self.source, again)
            self._record("recovered", f"published again {again} claimed files whose frames were neither in Redis nor in the store")

    def _publish_claim(self, claim: UnsettledClaim, publisher: Publisher) -> bool:
        """Publish a claimed file again under its frame id; False when it is no longer a file that may be
        read (checked as a new file is: whatever took its place may be a FIFO, a link or too large)."""
        path = Path(claim.path)
        try:
            checked = check_file(path, self.directory, self._extensions, self._max_file_bytes)
            if checked.mtime != claim.mtime:
                return False  # rewritten since: the new version is claimed as a file of its own
            if self._by_reference:
                open_checked(checked).close()  # the very file checked, still there
                data = b""
            else:
                data = read_checked(checked, self._max_file_bytes)
        except (FileSkippedError, OSError):
            return False
        publisher.publish(self._frame(claim.frame_id, path, claim.mtime, data, checked))
        return True

    def _frame(self, frame_id: str, path: Path, mtime: float, data: bytes, checked: CheckedFile) -> Frame:
        """The frame of one file, captured at its mtime, found by its path inside the folder; sent
        by reference, it names the checked file itself (a link's target inside the folder)."""
        reference = FileReference(str(checked.target), checked.size) if self._by_reference else None
        return Frame(
            frame_id=frame_id,
            line=self.line,
            camera=self.camera,
            source=self.source,
            captured_at=datetime.fromtimestamp(mtime, tz=timezone.utc),
            data=data,
            origin=path.relative_to(self.directory).as_posix() if path.is_relative_to(self.directory) else path.name,
            reference=reference,
        )

    def _list_files(self) -> tuple[list[CheckedFile], list[FileSkippedError]]:
        """The files now in the folder (and subfolders when recursive) that may be read, and those skipped.

        Only lstat/stat are used: nothing is opened. Hidden files and folders are passed over
        unrecorded; symlinked folders are never walked.
        """
        found: list[CheckedFile] = []
        skipped: list[FileSkippedError] = []
        pending_dirs = [self.directory]
        while pending_dirs:
            folder = pending_dirs.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as error:
                logger.warning("%s: cannot list %s: %s", self.source, folder, error)
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if self._recursive:
                            pending_dirs.append(Path(entry.path))
                        continue
                    found.append(check_file(Path(entry.path), self.directory, self._extensions, self._max_file_bytes))
                except FileSkippedError as error:
                    skipped.append(error)
                except OSError:
                    continue  # vanished between listing and stat; the next scan will not see it
        return found, skipped

    def _ingest_file(
        self, state: CheckedFile, publisher: Publisher, stats: FolderStats, skipped: list[FileSkippedError]
    ) -> _Outcome:
        """Claim and publish one stable file; count what became of it in `stats` and return it.

        A file refused when opened or read is appended to `skipped`.
        """
        try:
            handle = open_checked(state)
        except FileNotFoundError:
            logger.warning("%s: %s vanished before it could be read; skipped", self.source, state.path)
            stats.vanished += 1
            return "vanished"
        except FileSkippedError as error:
            skipped.append(error)
            return "skipped"
        except OSError as error:
            skipped.append(FileSkippedError("unreadable", state.path, f"cannot be read: {error}"))
            return "skipped"
        with handle:
            # Claimed, under its frame id, before publishing: a crash between the two leaves an
            # unsettled claim that the next pass publishes again. Opening first keeps unreadable
            # files unclaimed.
            frame_id = new_frame_id()
            claimed = self._waiter().call(
                lambda: claim_ingested_file(self._engine, self.source_key, str(state.path), state.size, state.mtime, frame_id),
                f"claiming {state.path.name}",
            )
            if not claimed:
                stats.already_ingested += 1
                return "already_ingested"
            try:
                data = b"" if self._by_reference else read_at_most(handle, state, self._max_file_bytes)
            except FileSkippedError as error:
                skipped.append(error)
                return "skipped"
            except OSError as error:
                skipped.append(FileSkippedError("unreadable", state.path, f"cannot be read: {error}"))
                return "skipped"
        # The bytes go as they are, even a corrupt image: the worker records undecodable frames.
        publisher.publish(self._frame(frame_id, state.path, state.mtime, data, state))
        stats.published += 1
        return "published"

    def _report_skipped(
        self, skipped: list[FileSkippedError], reported: set[tuple[Path, str]], stats: FolderStats
    ) -> None:
        """Count, log and record (in one transaction) the skipped files not yet reported in this run."""
        new = []
        for error in skipped:
            if (error.path, error.reason) not in reported:
                reported.add((error.path, error.reason))
                stats.skipped[error.reason] += 1
                logger.warning("%s: skipped %s", self.source, error)
                new.append((SKIPPED_FILE_KIND_PREFIX + error.reason, str(error)))
        if new:
            self._waiter().call(
                lambda: record_source_events(self._engine, self.line, self.camera, self.source, new),
                f"recording {len(new)} skipped files",
            )

    def _current_run(self) -> SourceRun:
        if self._run is None:
            raise RuntimeError("FolderSource: claims and source events belong to a run; call run()")
        return self._run

    def _waiter(self) -> OutageWaiter:
        """The database's outage waiter of the running run."""
        return self._current_run().waiters.database

    def _record(self, kind: str, message: str) -> None:
        """Record a source event of this folder in the store (waiting for the database if it is away)."""
        self._current_run().record(kind, message)
