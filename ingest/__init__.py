"""Ingest: turn sources (folders of images, video files, cameras, streams) into frames and publish
them into Redis for the rq workers, with a bounded queue."""

from ingest.errors import IngestError, QueueFullError, SourceUnavailableError
from ingest.folder import IMAGE_EXTENSIONS, FolderSource, FolderStats
from ingest.frames import Frame, check_stream_name, new_frame_id
from ingest.publisher import BackpressurePolicy, BatchLedger, Publisher
from ingest.video import VideoSource, VideoStats

__all__ = [
    "IMAGE_EXTENSIONS",
    "BackpressurePolicy",
    "BatchLedger",
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
]
