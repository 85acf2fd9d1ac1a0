"""Ingest: turn sources (folders of images, video files, cameras, streams) into frames and publish
them into Redis for the rq workers, with a bounded queue."""

from ingest.errors import IngestError, QueueFullError, SourceUnavailableError
from ingest.folder import IMAGE_EXTENSIONS, FolderSource, FolderStats
from ingest.frames import Frame, check_stream_name, new_frame_id
from ingest.publisher import (
    DEFAULT_JOB_FUNCTION,
    DEFAULT_QUEUE_NAME,
    DROPS_KEY,
    FRAME_KEY_PREFIX,
    PUBLISHED_KEY,
    BackpressurePolicy,
    Publisher,
    frame_key,
    make_queue,
    queue_counters,
)
from ingest.video import VideoSource, VideoStats

__all__ = [
    "DEFAULT_JOB_FUNCTION",
    "DEFAULT_QUEUE_NAME",
    "DROPS_KEY",
    "FRAME_KEY_PREFIX",
    "IMAGE_EXTENSIONS",
    "PUBLISHED_KEY",
    "BackpressurePolicy",
    "FolderSource",
    "FolderStats",
    "Frame",
    "IngestError",
    "Publisher",
    "QueueFullError",
    "SourceUnavailableError",
    "VideoSource",
    "VideoStats",
    "check_stream_name",
    "new_frame_id",
    "frame_key",
    "make_queue",
    "queue_counters",
]
