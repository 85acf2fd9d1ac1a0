"""The store's row API in one place: what workers, ingesters, the CLI and the dashboard call.

Each function lives in the module of its concern; this module gathers them so callers need one import.
"""

from store.inspections import (
    InspectionFilter,
    InspectionRecord,
    ReviewInfo,
    StoredInspection,
    inspection_detail,
    inspections_frame,
    recorded_frame_ids,
    write_inspections,
)
from store.ledger import (
    SKIPPED_FILE_KIND_PREFIX,
    SourceEventInfo,
    UnsettledClaim,
    claim_ingested_file,
    recent_source_events,
    record_source_event,
    record_source_events,
    settle_claims,
    skipped_file_counts,
    unsettled_claims,
)
from store.registry import (
    ModelInfo,
    activate_model,
    active_model_for_line,
    active_models,
    get_model,
    list_models,
    register_model,
)
from store.reviews import LinePrecision, count_review_queue, review_precision, review_queue, save_review
from store.streams import (
    LostFrames,
    SentFrame,
    lost_frame_counts,
    next_stream_sequence,
    record_sent_frames,
    settle_stream_frames,
    unsettled_stream_frames,
)
from store.stats import CameraCounts, LineStatus, RateBucket, defect_rate_series, line_counts, status_summary

__all__ = [
    "CameraCounts",
    "InspectionFilter",
    "InspectionRecord",
    "LinePrecision",
    "LineStatus",
    "LostFrames",
    "ModelInfo",
    "RateBucket",
    "ReviewInfo",
    "SKIPPED_FILE_KIND_PREFIX",
    "SentFrame",
    "SourceEventInfo",
    "StoredInspection",
    "UnsettledClaim",
    "activate_model",
    "active_model_for_line",
    "active_models",
    "claim_ingested_file",
    "count_review_queue",
    "defect_rate_series",
    "get_model",
    "inspection_detail",
    "inspections_frame",
    "line_counts",
    "list_models",
    "lost_frame_counts",
    "next_stream_sequence",
    "recent_source_events",
    "record_sent_frames",
    "record_source_event",
    "record_source_events",
    "skipped_file_counts",
    "recorded_frame_ids",
    "register_model",
    "review_precision",
    "review_queue",
    "save_review",
    "settle_claims",
    "settle_stream_frames",
    "status_summary",
    "unsettled_claims",
    "unsettled_stream_frames",
    "write_inspections",
]
