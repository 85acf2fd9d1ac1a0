"""The rq job: one micro-batch of frames in, one inspection row per frame out.

`score_frames` is what the publisher enqueues (``worker.jobs.score_frames``). For a batch it
1. fetches every frame's bytes from Redis in one round trip (a frame sent by reference: its file,
   read inside the worker's frame root, worker.references);
2. decodes them a few at a time, within the worker's decode budget, each cut to MAX_FRAME_SIDE
   pixels as soon as it is decoded (on the scoring device where the worker decodes there:
   worker.device_decoding); a frame that cannot be decoded, or whose bytes expired, gets an
   error row (bytes missing before their expiry were lost with Redis: no row, the source's ledger
   recovers them);
3. groups each chunk by the active model of their line (a line without one: error rows) and scores
   each group in forward passes of at most the worker's batch size;
4. writes the image and heatmap of flagged frames (and of a sample of good ones) as artifacts;
5. writes all rows of the batch in one transaction, with their verdicts for the line (the outbox,
   when verdicts are sent: worker.verdict_outbox), then deletes the frame bytes;
6. adds the frames to their cameras' drift windows and raises or clears alarms (worker.drift).

Delivery is at least once: a batch may run again after a worker died. Rows are upserted by frame
id, artifacts are keyed by frame id, and a frame whose bytes are gone because an earlier run of
the batch recorded it is skipped rather than overwritten with an "expired" error.

Redis and the database being away is not the batch's fault: every step that needs them is retried
in place until they are back (the context's outage waiters), so the batch is kept and no retry of
the job is spent on an outage. A checkpoint that fails to read (an I/O error) is waited out alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

import torch

from model.device_images import decode_on_device, resize_on_device
from model.errors import InvalidImageError
from model.images import decode_image
from model.scoring import ImageScore, InspectionModel
from store.errors import InvalidRecordError
from store.records import InspectionRecord, recorded_frame_ids, write_inspections
from store.schema import ERROR_VERDICT, FLAGGED_VERDICT, Inspection
from wire.metrics import observe_forward_pass, observe_recorded
from wire.protocol import FrameEntry, InvalidPayloadError, payload_entries
from worker.context import WorkerContext, current_context
from worker.defaults import MAX_FRAME_SIDE
from worker.errors import FrameReferenceError, WorkerError
from worker.evidence import evidence_keys, save_evidence
from worker.drift import record_alarm_changes
from worker.references import read_reference
from worker.verdict_outbox import verdict_outbox

logger = logging.getLogger(__name__)

#: A decoded frame on its way to scoring: its entry and its (H,W,3) uint8 RGB pixels on the host.
Decoded = tuple[FrameEntry, np.ndarray]


@dataclass
class DeviceFrames:
    """Frames of a chunk also decoded on the scoring device: frame id -> ((3,H,W) uint8 there, the
    encoded bytes, kept to decode the frame on the host while the device's decoding is measured)."""

    frames: dict[str, tuple[torch.Tensor, bytes]] = field(default_factory=dict)


#: The verdict of a frame scored below its model's threshold.
GOOD_VERDICT = "good"
#: Start of the error of a frame whose bytes were no longer in Redis.
EXPIRED_REASON = "frame bytes expired"
#: Start of the error of a frame whose result made no valid row.
UNRECORDABLE_REASON = "result not recordable"
#: Start of the error row of a frame whose job failed on every attempt (see `record_dead_letters`).
DEAD_LETTER_REASON = "dead letter"
#: Bytes a decoded frame holds while it is scored, per byte of its RGB pixels (3 a pixel): the pixels,
#: its anomaly map and the map's normalised copy (4 each, float32) and the heatmap overlay (3).
SCORING_BYTES_PER_IMAGE_BYTE = 14 / 3
# The fields an error row cannot do without, and the longest value each column holds.
_IDENTITY_FIELDS = {name: Inspection.__table__.c[name].type.length for name in ("frame_id", "line", "camera")}


@dataclass
class BatchOutcome:
    """What became of a job's frames; the job's (JSON) return value."""

    frames: int = 0
    scored: int = 0
    flagged: int = 0
    errors: int = 0
    already_recorded: int = 0
    unrecordable: int = 0
    lost_with_redis: int = 0


def score_frames(payload: dict[str, Any]) -> dict[str, int]:
    """rq job function: score the frames of `payload` with the running worker's context.

    `payload` is ``{"frames": [entry, ...]}`` as `wire.protocol` encodes it. Returns the counts
    of `BatchOutcome`. Runs only inside a lineguard worker process (see worker.context).
    """
    return vars(score_batch(current_context(), payload))


def score_batch(context: WorkerContext, payload: dict[str, Any]) -> BatchOutcome:
    """Score a job's frames and record one row per frame; see the module docstring for the steps.

    Bad frames become error rows; a malformed payload (not ``{"frames": [...]}``) raises
    InvalidPayloadError. Redis and database outages are waited out; other failures propagate.
    """
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    entries = payload_entries(payload)
    outcome = BatchOutcome(frames=len(entries))
    records: list[InspectionRecord] = []
    frames = _read_metadata(context, entries, started_at, records, outcome)
    fetched = _fetch(context, frames, started_at, records, outcome)
    # Decoded a few at a time: the frames held at once (and their anomaly maps) stay within the budget.
    shadow_verdicts = []
    for images_by_line, on_device in _decoded_within_budget(context, fetched, started_at, records):
        _score_chunk(context, images_by_line, on_device, started_at, records)
        if context.shadows is not None:
            shadow_verdicts += context.shadows.verdicts(images_by_line, records)
        del images_by_line, on_device  # so that the next chunk is decoded without this one held

    outbox = verdict_outbox(records, context.verdict_topic_prefix)
    context.database_waiter.call(lambda: write_inspections(context.engine, records, outbox), f"writing {len(records)} rows")
    observe_recorded(records)
    alarms = context.drift.settle(records)
    if alarms:
        context.database_waiter.call(
            lambda: record_alarm_changes(context.engine, alarms, context.verdict_topic_prefix), "recording drift alarms"
        )
    if context.shadows is not None:
        context.shadows.store(shadow_verdicts)  # after the rows: the shadow never stands in for a verdict
    if frames:
        context.redis_waiter.call(lambda: context.redis.delete(*(frame.key for frame in frames)), "deleting frame bytes")
    outcome.errors = sum(record.verdict == ERROR_VERDICT for record in records)
    outcome.flagged = sum(record.verdict == FLAGGED_VERDICT for record in records)
    outcome.scored = len(records) - outcome.errors
    # A job whose frames were all scored together with another job's has nothing to tell.
    logger.log(
        logging.DEBUG if outcome.already_recorded == outcome.frames else logging.INFO,
        "%d frames: %d scored (%d flagged), %d errors, %d already recorded, %d lost with Redis, in %.2f s",
        outcome.frames, outcome.scored, outcome.flagged, outcome.errors, outcome.already_recorded,
        outcome.lost_with_redis, time.monotonic() - clock,
    )
    return outcome


def record_dead_letters(context: WorkerContext, payload: Any, reason: str) -> int:
    """Give each frame of a job failed for good that has no row yet its final error row, saying
    `reason`, so that its source's ledger settles it instead of publishing it again. Returns the
    rows written. The frame bytes are left to their expiry, for `lineguard jobs retry`."""
    started_at = datetime.now(UTC)
    try:
        entries = payload_entries(payload)
    except InvalidPayloadError:
        return 0  # nothing in it names a frame
    records: list[InspectionRecord] = []
    frames = _read_metadata(context, entries, started_at, records, BatchOutcome())
    records += [_error_record(frame, f"{DEAD_LETTER_REASON}: {reason}", started_at, context.name) for frame in frames]
    ids = [record.frame_id for record in records]
    recorded = context.database_waiter.call(lambda: recorded_frame_ids(context.engine, ids), "looking for rows")
    letters = [record for record in records if record.frame_id not in recorded]
    outbox = verdict_outbox(letters, context.verdict_topic_prefix)
    context.database_waiter.call(lambda: write_inspections(context.engine, letters, outbox), f"writing {len(letters)} dead letters")
    return len(letters)


def _read_metadata(
    context: WorkerContext, entries: list[Any], started_at: datetime, records: list[InspectionRecord], outcome: BatchOutcome
) -> list[FrameEntry]:
    """The job's frames; an entry with unusable metadata gets an error row in `records` when it can."""
    frames = []
    for entry in entries:
        try:
            if not _has_identity(entry):
                raise InvalidPayloadError(f"frame entry lacks a frame_id, line or camera the store can hold: {entry!r}")
            frames.append(FrameEntry.from_json(entry))
        except InvalidPayloadError as error:
            record = _metadata_error_record(entry, error, started_at, context.name)
            if record is None:
                outcome.unrecordable += 1
                logger.error("job entry without frame id, line or camera cannot be recorded: %s (%r)", error, entry)
            else:
                records.append(record)
    return frames


def _fetch(
    context: WorkerContext,
    frames: list[FrameEntry],
    started_at: datetime,
    records: list[InspectionRecord],
    outcome: BatchOutcome,
) -> list[tuple[FrameEntry, bytes]]:
    """The frames' encoded bytes, fetched in one round trip; frames whose bytes expired get error
    rows in `records`; frames already recorded, or whose bytes Redis lost before their expiry, are
    only counted in `outcome`. A frame sent by reference is read from its file, and gets an error
    row saying why when it may not be read (worker.references)."""
    keys = [frame.key for frame in frames]
    blobs = context.redis_waiter.call(lambda: context.redis.mget(keys), "fetching frame bytes") if frames else []
    gone = [frame.frame_id for frame, blob in zip(frames, blobs) if blob is None]
    recorded_before = context.database_waiter.call(lambda: recorded_frame_ids(context.engine, gone), "looking for rows")
    fetched = []
    for frame, blob in zip(frames, blobs):
        if blob is not None and frame.reference is not None:
            try:
                fetched.append((frame, read_reference(frame.reference, context.frame_root, frame.size, context.max_reference_bytes)))
            except FrameReferenceError as error:
                records.append(_error_record(frame, f"{frame.label}: {error}", started_at, context.name))
        elif blob is not None:
            fetched.append((frame, blob))
        elif frame.frame_id in recorded_before:
            outcome.already_recorded += 1  # an earlier run of this job wrote it, then deleted the bytes
        elif not frame.expired(started_at):
            # Not expired, not recorded: Redis lost it. Not the frame's fault, so no error row;
            # its source's ledger publishes it again (a folder) or counts it lost (a stream).
            outcome.lost_with_redis += 1
            logger.warning("%s: its bytes are gone from Redis before their expiry; left to its source's ledger", frame.label)
        else:
            reason = f"{EXPIRED_REASON}: {frame.key} was no longer in Redis when a worker took the frame"
            records.append(_error_record(frame, reason, started_at, context.name))
    return fetched


def _decoded_within_budget(
    context: WorkerContext, fetched: list[tuple[FrameEntry, bytes]], started_at: datetime, records: list[InspectionRecord]
) -> Iterator[tuple[dict[str, list[Decoded]], DeviceFrames]]:
    """The fetched frames decoded, by line, in chunks whose frames and anomaly maps fit in the
    worker's decode budget (at least one frame a chunk). Each frame is cut to MAX_FRAME_SIDE as
    soon as it is decoded, so one full-size frame at most is held at full size. Frames that do not
    decode get error rows in `records`. Where the worker decodes on its device, the frames are
    decoded there (a batch at a time), and each chunk's DeviceFrames holds them; the host pixels are
    then the device's, copied back (for drift, evidence and shadows)."""
    chunk: dict[str, list[Decoded]] = {}
    on_device = DeviceFrames()
    held = 0
    for frame, blob, image, device_image in _decoded(context, fetched, started_at, records):
        cost = image.nbytes * SCORING_BYTES_PER_IMAGE_BYTE
        if chunk and held + cost > context.decode_budget_bytes:
            yield chunk, on_device
            chunk, on_device, held = {}, DeviceFrames(), 0
        chunk.setdefault(frame.line, []).append((frame, image))
        if device_image is not None:
            on_device.frames[frame.frame_id] = (device_image, blob)
        held += cost
    if chunk:
        yield chunk, on_device


def _decoded(
    context: WorkerContext, fetched: list[tuple[FrameEntry, bytes]], started_at: datetime, records: list[InspectionRecord]
) -> Iterator[tuple[FrameEntry, bytes, np.ndarray, torch.Tensor | None]]:
    """Each frame that decodes: (entry, bytes, host pixels, device pixels or None); the others get error rows."""
    decoding = context.device_decoding
    step = context.batch_size if decoding is not None else 1
    for start in range(0, len(fetched), step):
        part = fetched[start : start + step]
        on_device = decode_on_device([b for _, b in part], [f.label for f, _ in part], decoding.device) if decoding is not None else [None] * len(part)
        for (frame, blob), device_image in zip(part, on_device):
            if isinstance(device_image, torch.Tensor):
                device_image = _device_fit_to_side(device_image, MAX_FRAME_SIDE)
                yield frame, blob, np.ascontiguousarray(device_image.permute(1, 2, 0).cpu().numpy()), device_image
                continue
            # Decoded on the host: no device decoding, or the device could not decode it (the host says whether it is bad).
            try:
                image = _fit_to_side(decode_image(blob, frame.label), MAX_FRAME_SIDE)
            except InvalidImageError as error:
                records.append(_error_record(frame, str(error), started_at, context.name))
                continue
            except Exception as error:  # noqa: BLE001 - whatever a decoder does with one frame stays with that frame
                reason = f"{frame.label}: decoding failed ({type(error).__name__}: {error})"
                records.append(_error_record(frame, reason, started_at, context.name))
                continue
            yield frame, blob, image, None


def _device_fit_to_side(image: torch.Tensor, longest_side: int) -> torch.Tensor:
    """(3,H,W) uint8 on a device, scaled down like `_fit_to_side` so that its longer side is at most `longest_side`."""
    height, width = image.shape[1:]
    if max(height, width) <= longest_side:
        return image
    scale = longest_side / max(height, width)
    return resize_on_device(image, max(1, round(height * scale)), max(1, round(width * scale)))


def _fit_to_side(image: np.ndarray, longest_side: int) -> np.ndarray:
    """`image` scaled down (area averaging) so that its longer side is at most `longest_side`."""
    height, width = image.shape[:2]
    if max(height, width) <= longest_side:
        return image
    scale = longest_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _score_chunk(
    context: WorkerContext,
    images_by_line: dict[str, list[Decoded]],
    on_device: DeviceFrames,
    started_at: datetime,
    records: list[InspectionRecord],
) -> None:
    """Score one chunk of decoded frames, by model, in forward passes of at most the batch size; rows into `records`."""
    for model, group in _group_by_model(context, images_by_line, started_at, records):
        for start in range(0, len(group), context.batch_size):
            records += _score_group(context, model, group[start : start + context.batch_size], on_device, started_at)


def _group_by_model(
    context: WorkerContext,
    images_by_line: dict[str, list[tuple[FrameEntry, np.ndarray]]],
    started_at: datetime,
    records: list[InspectionRecord],
) -> list[tuple[InspectionModel, list[tuple[FrameEntry, np.ndarray]]]]:
    """Frames grouped by the model of their line, so lines sharing a model share forward passes.

    Frames of a line whose model is missing or unloadable get error rows, appended to `records`.
    """
    groups: dict[str, tuple[InspectionModel, list[tuple[FrameEntry, np.ndarray]]]] = {}
    for line, items in images_by_line.items():
        try:
            model = context.checkpoint_waiter.call(
                lambda line=line: context.database_waiter.call(
                    lambda: context.models.model_for_line(line), "reading the active models"
                ),
                f"loading the model of line {line}",
            )
        except WorkerError as error:
            records += [_error_record(frame, str(error), started_at, context.name) for frame, _ in items]
            continue
        groups.setdefault(model.version, (model, []))[1].extend(items)
    return list(groups.values())


def _score_group(
    context: WorkerContext,
    model: InspectionModel,
    group: Sequence[Decoded],
    on_device: DeviceFrames,
    started_at: datetime,
) -> list[InspectionRecord]:
    """Score `group` in one forward pass and keep the pictures the rows will point to."""
    clock = time.monotonic()
    group, results = _scored(context, model, group, on_device)
    observe_forward_pass(len(group), time.monotonic() - clock)
    records = []
    for (frame, image), result in zip(group, results):
        context.drift.measure(frame.frame_id, model, image)
        image_key = heatmap_key = None
        if result.is_anomaly or context.good_samples.keeps(frame.line, frame.camera):
            keys = evidence_keys(frame.line, frame.camera, frame.captured_at, frame.frame_id)
            image_key, heatmap_key = save_evidence(context.artifacts, keys, image, result, model)
        records.append(
            _frame_record(
                frame,
                started_at,
                context.name,
                verdict=FLAGGED_VERDICT if result.is_anomaly else GOOD_VERDICT,
                model_version=model.version,
                score=min(max(result.score, 0.0), 1.0),
                raw_score=result.raw_score,
                threshold=float(model.calibration.threshold),
                image_key=image_key,
                heatmap_key=heatmap_key,
                random_teacher=model.random_teacher,
            )
        )
    return records


def _scored(
    context: WorkerContext, model: InspectionModel, group: Sequence[Decoded], on_device: DeviceFrames
) -> tuple[Sequence[Decoded], list[ImageScore]]:
    """The group's scores: from the frames decoded on the device where the worker decodes there and
    trusts it for `model`; otherwise from the frames decoded again on the host (while the device's
    decoding is measured for `model`, compared with the device's: worker.device_decoding), whose
    pixels the rows then keep too."""
    decoding = context.device_decoding
    device_frames = [on_device.frames.get(frame.frame_id) for frame, _ in group]
    if decoding is None or any(found is None for found in device_frames):
        return group, model.score_images([image for _, image in group])
    tensors = [tensor for tensor, _ in device_frames]
    serves = decoding.serves(model)
    if serves and decoding.trusted(model):
        return group, model.score_decoded(tensors)
    try:
        host_group = [(frame, _fit_to_side(decode_image(blob, frame.label), MAX_FRAME_SIDE)) for (frame, _), (_, blob) in zip(group, device_frames)]
    except Exception:  # noqa: BLE001 - a frame only the device decodes: scored as decoded there, not compared
        logger.warning("a frame the device decoded does not decode on the host; its group is scored as the device decoded it")
        return group, model.score_decoded(tensors) if serves else model.score_images([image for _, image in group])
    host_results = model.score_images([image for _, image in host_group])
    if serves and decoding.trusted(model) is None:
        decoding.compare(model, host_results, model.score_decoded(tensors))
    return host_group, host_results


def _frame_record(frame: FrameEntry, started_at: datetime, worker: str, **outcome: Any) -> InspectionRecord:
    """The row of `frame`: its identity and times, and the `outcome` fields (verdict, scores or error).

    InspectionRecord rejects an unknown field, so a misspelt outcome cannot pass silently. An outcome
    that makes no valid row (a NaN score, an origin longer than its column) gives the frame its own
    error row saying why, so that one bad record never fails the frames of its batch with it.
    """
    try:
        return _record(frame, started_at, worker, frame.findable_origin, **outcome)
    except InvalidRecordError as error:
        logger.error("%s: its result makes no valid row (%s); recorded as an error", frame.label, error)
        return _record(
            frame, started_at, worker, _fitted(frame.findable_origin, "origin"),
            source=_fitted(frame.source, "source"), verdict=ERROR_VERDICT, error=f"{UNRECORDABLE_REASON}: {error}",
        )


def _record(frame: FrameEntry, started_at: datetime, worker: str, origin: str | None, **outcome: Any) -> InspectionRecord:
    fields = {"source": frame.source, **outcome}
    return InspectionRecord(
        frame_id=frame.frame_id,
        line=frame.line,
        camera=frame.camera,
        captured_at=frame.captured_at,
        enqueued_at=frame.enqueued_at,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        worker=worker,
        origin=origin,
        **fields,
    )


def _fitted(text: str | None, column: str) -> str | None:
    """`text` cut to what column `column` of the inspections holds, marked as cut."""
    longest = Inspection.__table__.c[column].type.length
    if text is None or len(text) <= longest:
        return text
    return text[: longest - 1] + "…"


def _error_record(frame: FrameEntry, reason: str, started_at: datetime, worker: str) -> InspectionRecord:
    return _frame_record(frame, started_at, worker, verdict=ERROR_VERDICT, error=reason)


def _metadata_error_record(entry: Any, error: Exception, started_at: datetime, worker: str) -> InspectionRecord | None:
    """An error row for an entry with unusable metadata, or None when it lacks even an id, line and camera.

    Times that cannot be read are replaced by the batch's start, the earliest time the worker knows.
    """
    if not _has_identity(entry):
        return None
    return InspectionRecord(
        frame_id=entry["frame_id"],
        line=entry["line"],
        camera=entry["camera"],
        source=_fitted(str(entry.get("source") or "unknown"), "source"),
        captured_at=started_at,
        enqueued_at=started_at,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        verdict=ERROR_VERDICT,
        error=f"invalid frame metadata: {error}",
        worker=worker,
    )


def _has_identity(entry: Any) -> bool:
    """Whether `entry` has the frame id, line and camera an inspection row needs, of storable length."""
    return isinstance(entry, dict) and all(
        isinstance(entry.get(name), str) and 0 < len(entry[name]) <= longest for name, longest in _IDENTITY_FIELDS.items()
    )
