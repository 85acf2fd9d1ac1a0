"""Where the pages get their data: shared connections, and query results cached for a short while.

Connections (engine, Redis client, artifact store) are ``st.cache_resource``s, one per URL and
server process. Query results are ``st.cache_data`` entries keyed by the URL and the query's
arguments, so every browser session showing the same window shares one query per period; pages
round "now" down (``dashboard.windows.floor_time``) so that the arguments repeat within a period.
Saving reviews clears the cached review results so the saved parts leave the queue at once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import datetime, timedelta

import streamlit as st
from PIL import Image, UnidentifiedImageError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine

from dashboard import queries
from dashboard.health import QueueHealth, queue_health
from dashboard.windows import Window
from wire.training_jobs import TrainingJob, TrainingRequest, queue_training, training_jobs
from store.alarms import AlarmInfo, open_alarms
from store import (
    ActivationInfo,
    ArtifactError,
    ArtifactStore,
    InspectionFilter,
    LinePrecision,
    CameraCounts,
    LostFrames,
    ModelInfo,
    OutboxDepth,
    RateBucket,
    ShadowAgreement,
    StoredInspection,
    activate_model,
    activation_history,
    count_review_queue,
    defect_rate_series,
    inspection_detail,
    line_counts,
    list_models,
    lost_frame_counts,
    make_engine,
    open_artifact_store,
    outbox_depth,
    review_precision,
    review_queue,
    rollback_model,
    save_review,
    shadow_agreement,
    shadow_models,
)

#: Seconds a live figure (recent rates, queue health) may be served from the cache.
LIVE_TTL_S = 5
#: Seconds of "the present" beside a window's average: the live page's current frame rate.
PRESENT_S = 60
#: Seconds a settled chunk of a window may be served from the cache; bounds how long a row that
#: lands after its chunk settled (a worker's clock far behind) stays out of the figures.
SETTLED_TTL_S = 600
#: Seconds a review-queue page may be served from the cache (saving a review clears it at once).
REVIEW_TTL_S = 15
#: Seconds the model list, the active models and the lines and cameras may be served from the cache.
REFERENCE_TTL_S = 60
#: Seconds Redis may take to connect or answer before the live page reports it unreachable.
REDIS_TIMEOUT_S = 1.0
#: Images (encoded thumbnails and detail-size copies) kept in memory, across all sessions.
IMAGE_CACHE_ENTRIES = 512


@st.cache_resource(show_spinner=False)
def engine(database_url: str) -> Engine:
    """The engine of ``database_url``, one per server process."""
    return make_engine(database_url)


@st.cache_resource(show_spinner=False)
def redis_client(redis_url: str) -> Redis:
    """A Redis client for ``redis_url`` with short timeouts, so a Redis outage cannot stall a page."""
    return Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)


@st.cache_resource(show_spinner=False)
def artifact_store(artifacts_url: str) -> ArtifactStore:
    """The artifact store at ``artifacts_url``."""
    return open_artifact_store(artifacts_url)


def window_buckets(database_url: str, window: Window, now: datetime) -> list[RateBucket]:
    """Counts and latencies per bucket, line and camera over ``window`` ending at ``now``.

    Settled chunks come from a long-lived cache; only the recent rest is read at every refresh
    (see ``dashboard.windows``).
    """
    chunks, recent_since = window.plan(now)
    buckets = [
        bucket
        for since, until in chunks
        for bucket in settled_buckets(database_url, since, until, window.bucket_seconds)
    ]
    return buckets + recent_buckets(database_url, recent_since, window.bucket_seconds)


@st.cache_data(ttl=SETTLED_TTL_S, show_spinner=False)
def settled_buckets(database_url: str, since: datetime, until: datetime, bucket_seconds: int) -> list[RateBucket]:
    """The buckets of a settled chunk ``[since, until)`` (see ``store.defect_rate_series``)."""
    return defect_rate_series(engine(database_url), since, bucket_seconds, until=until)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def recent_buckets(database_url: str, since: datetime, bucket_seconds: int) -> list[RateBucket]:
    """The buckets from ``since`` on, newest rows included."""
    return defect_rate_series(engine(database_url), since, bucket_seconds)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def present_counts(database_url: str, now: datetime) -> list[CameraCounts]:
    """Frames per line and camera finished in the last PRESENT_S seconds before ``now`` (and after)."""
    return line_counts(engine(database_url), since=now - timedelta(seconds=PRESENT_S))


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def alarms(database_url: str) -> list[AlarmInfo]:
    """Open drift alarms, oldest first (see ``store.alarms``)."""
    return open_alarms(engine(database_url))


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def outbox(database_url: str, sinks: tuple[str, ...]) -> OutboxDepth:
    """Verdicts and alarms waiting for the relay's sinks (see ``store.outbox``)."""
    return outbox_depth(engine(database_url), sinks)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def health(redis_url: str, queue_name: str) -> QueueHealth:
    """Queue depth, published and dropped frames, and workers alive, read from Redis."""
    return queue_health(redis_client(redis_url), queue_name)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def lost_frames(database_url: str) -> list[LostFrames]:
    """Frames lost with Redis, per line and camera (see ``store.streams``)."""
    return lost_frame_counts(engine(database_url))


@st.cache_data(ttl=REFERENCE_TTL_S, show_spinner=False)
def line_models(database_url: str) -> list[queries.LineModelInfo]:
    """The active model of every line, with its teacher."""
    return queries.active_line_models(engine(database_url))


@st.cache_data(ttl=REFERENCE_TTL_S, show_spinner=False)
def models(database_url: str) -> list[ModelInfo]:
    """Every registered model, newest first."""
    return list_models(engine(database_url))


def models_with(database_url: str, version: str | None) -> list[ModelInfo]:
    """Every registered model, newest first, read again when ``version`` is not among the cached ones:
    a link to a model registered since the list was cached (a candidate just trained) opens that
    model, not another one. ``version`` None: the cached list."""
    cached = models(database_url)
    if version is None or any(model.version == version for model in cached):
        return cached
    models.clear()
    return models(database_url)


@st.cache_data(ttl=REFERENCE_TTL_S, show_spinner=False)
def streams(database_url: str) -> list[tuple[str, str]]:
    """Every (line, camera) with inspections, sorted."""
    return queries.streams(engine(database_url))


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def queue_page(database_url: str, filters: InspectionFilter, limit: int, offset: int) -> list[StoredInspection]:
    """One page of flagged, unreviewed parts matching ``filters``, newest first."""
    return review_queue(engine(database_url), filters, limit=limit, offset=offset)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def queue_size(database_url: str, filters: InspectionFilter) -> int:
    """How many flagged, unreviewed parts match ``filters``."""
    return count_review_queue(engine(database_url), filters)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def precision(database_url: str) -> list[LinePrecision]:
    """Per line, all time: flags, how many were reviewed and confirmed, how many wait."""
    return review_precision(engine(database_url))


def detail(database_url: str, inspection_id: int) -> StoredInspection:
    """One inspection and its review, read now (the detail view must show a review just saved)."""
    return inspection_detail(engine(database_url), inspection_id)


def save_reviews(database_url: str, inspection_ids: Iterable[int], verdict: str, note: str | None, reviewer: str) -> int:
    """Save ``reviewer``'s ``verdict`` on every inspection in ``inspection_ids``; returns how many were saved.

    Each review is its own transaction (``store.save_review``); the cached review results are
    cleared afterwards, also when a save fails halfway, so the page shows what was saved.
    """
    saved = 0
    try:
        for inspection_id in inspection_ids:
            save_review(engine(database_url), inspection_id, verdict, note, reviewer)
            saved += 1
    finally:
        for cached in (queue_page, queue_size, precision):
            cached.clear()
    return saved


@st.cache_data(ttl=REFERENCE_TTL_S, show_spinner=False)
def activations(database_url: str, line: str) -> list[ActivationInfo]:
    """Every change of ``line``'s model, newest first."""
    return activation_history(engine(database_url), line)


def change_line_model(database_url: str, line: str, version: str | None, by: str, reason: str | None) -> ActivationInfo:
    """Make ``version`` ``line``'s model (None: roll back its latest change), recorded as ``by``'s
    action; the cached models and histories are cleared so every page shows the change at once."""
    try:
        if version is None:
            return rollback_model(engine(database_url), line, by=by, reason=reason)
        return activate_model(engine(database_url), line, version, by=by, reason=reason)
    finally:
        for cached in (line_models, activations):
            cached.clear()


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def shadow(database_url: str, line: str) -> ShadowAgreement | None:
    """The shadow candidate of ``line`` and how it agrees with the active model; None when none runs."""
    version = shadow_models(engine(database_url)).get(line)
    return shadow_agreement(engine(database_url), line, version) if version else None


def queue_retraining(redis_url: str, line: str, by: str, steps: int | None = None) -> str:
    """Queue a retraining of ``line`` (``steps`` optimiser steps; None: the training default) for
    `lineguard worker --train`; returns the job's id."""
    return queue_training(redis_client(redis_url), TrainingRequest(line=line, requested_by=by, steps=steps))


def retrainings(redis_url: str, line: str) -> list[TrainingJob] | None:
    """The latest training jobs of ``line``, newest first; None when Redis does not answer."""
    try:
        return training_jobs(redis_client(redis_url), line, limit=5)
    except RedisError:
        return None


def artifact_json(artifacts_url: str, key: str) -> dict | None:
    """The JSON document stored under ``key`` (a comparison), or None when there is none or it is unreadable."""
    try:
        return json.loads(artifact_store(artifacts_url).get(key))
    except (ArtifactError, ValueError):
        return None


def artifact_image(artifacts_url: str, key: str, max_side: int | None) -> bytes | None:
    """The image stored under ``key``, shrunk to ``max_side`` pixels on its longer side (None: as stored).

    None when it is missing or unreadable: a page shows a placeholder instead of failing. Failures
    are not cached, so an image that appears later is shown at the next rerun.
    """
    try:
        return _artifact_image(artifacts_url, key, max_side)
    except (ArtifactError, UnidentifiedImageError, OSError):
        return None


@st.cache_data(max_entries=IMAGE_CACHE_ENTRIES, show_spinner=False)
def _artifact_image(artifacts_url: str, key: str, max_side: int | None) -> bytes:
    data = artifact_store(artifacts_url).get(key)
    if max_side is None:
        return data
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
