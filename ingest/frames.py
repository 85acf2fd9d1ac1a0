"""The frame: one captured image with where and when it was taken.

A frame keeps its image as encoded bytes (the file's own bytes, or a video frame encoded once), so
ingest never decodes an image it only forwards; the worker decodes. A frame whose file lies on
storage the workers share may instead be sent by reference: its path, which the worker reads.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime


def check_stream_name(argument: str, value: str) -> str:
    """Return `value` if it can name a line or camera, else raise ValueError naming `argument`.

    Line and camera are joined as "<line>/<camera>" in the queue counters, so neither may contain
    a slash; blank names and surrounding whitespace would make counters unreadable.
    """
    if not isinstance(value, str) or not value or value.strip() != value or "/" in value:
        raise ValueError(
            f"{argument} must be a non-empty name without '/' or surrounding spaces, got {value!r}"
        )
    return value


def new_frame_id() -> str:
    """Return a unique 32-hex-digit frame id that sorts by creation time.

    The first 12 digits are the Unix time in milliseconds and the other 20 are random, like a
    ULID in hex: ids from one clock sort in capture order, and two sources never collide.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


@dataclass(frozen=True)
class FileReference:
    """Where a frame sent by reference lies: the absolute path of a regular file on storage that the
    workers share (mounted at the same path), and its size when it was taken."""

    path: str
    size: int

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"a frame reference is an absolute path, got {self.path!r}")
        if self.size < 0:
            raise ValueError(f"a frame reference's size is >= 0, got {self.size}")


@dataclass(frozen=True)
class Frame:
    """One captured image on its way to a worker.

    Attributes:
        frame_id: unique id (see `new_frame_id`); the store's key for the inspection.
        line: production line name.
        camera: camera name within the line.
        source: where frames come from, e.g. "folder:/abs/dir" or "video:rtsp://host/stream".
        captured_at: timezone-aware capture time.
        data: the encoded image (JPEG, PNG, ...) exactly as it is to be decoded by the worker.
        origin: where within the source this frame was found (a file's path relative to the
            folder, a video's frame position), or None.
        sequence: the camera's frame number, for stream sources (see ``store.streams``); None for
            a folder, whose files are found by their path.
        reference: for a frame sent by reference, its file (then `data` is empty); None when the
            bytes travel.
    """

    frame_id: str
    line: str
    camera: str
    source: str
    captured_at: datetime
    data: bytes = field(repr=False)
    origin: str | None = None
    sequence: int | None = None
    reference: FileReference | None = None

    @property
    def size(self) -> int:
        """Bytes of the encoded image: the data's, or the referenced file's."""
        return self.reference.size if self.reference is not None else len(self.data)

    def __post_init__(self) -> None:
        if self.reference is not None and self.data:
            raise ValueError(f"frame {self.frame_id} is sent by reference: its bytes stay in the file, data must be empty")
        check_stream_name("line", self.line)
        check_stream_name("camera", self.camera)
        if self.captured_at.tzinfo is None:
            raise ValueError(f"captured_at of frame {self.frame_id} must be timezone-aware")
