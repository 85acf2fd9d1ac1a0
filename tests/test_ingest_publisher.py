"""Publisher: micro-batches, JSON jobs, frame keys with a TTL, bounded queue (block / drop)."""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from datetime import datetime, timezone

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from ingest.errors import PublishInterrupted, QueueFullError
from ingest.frames import Frame, new_frame_id
from ingest.publisher import Publisher
from wire.protocol import DROPS_KEY, PUBLISHED_KEY, frame_key, queue_counters

from ingest_fixtures import QUEUE, redis  # noqa: F401  (fixtures)


def make_frame(line: str = "L1", camera: str = "C1", data: bytes | None = None) -> Frame:
    frame_id = new_frame_id()
    return Frame(
        frame_id=frame_id,
        line=line,
        camera=camera,
        source="test:publisher",
        captured_at=datetime.now(timezone.utc),
        data=data if data is not None else f"image {frame_id}".encode(),
    )


def job_payloads(publisher: Publisher) -> list[dict]:
    """The payload of every job waiting in the publisher's queue, oldest first."""
    queue = publisher.queue
    return [
        Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer).args[0] for job_id in queue.job_ids
    ]


def test_batches_are_flushed_when_full(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=3, max_wait_s=60)
    frames = [make_frame() for _ in range(7)]
    enqueued_now = [publisher.publish(frame) for frame in frames]

    assert enqueued_now == [0, 0, 3, 0, 0, 3, 0]
    assert publisher.queue.count == 2
    assert publisher.buffered == 1

    publisher.close()
    batches = [[item["frame_id"] for item in payload["frames"]] for payload in job_payloads(publisher)]
    assert batches == [[f.frame_id for f in frames[0:3]], [f.frame_id for f in frames[3:6]], [frames[6].frame_id]]
    assert publisher.published == 7


def test_a_partial_batch_is_flushed_after_max_wait_while_the_source_idles(redis: Redis) -> None:
    max_wait_s = 0.2
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=100, max_wait_s=max_wait_s)
    frame = make_frame()
    publisher.publish(frame)
    assert publisher.poll() == 0
    assert publisher.queue.count == 0

    # idle() is how sources wait: it must flush on time although nothing else is published.
    assert publisher.idle(max_wait_s + 0.5, threading.Event()) is False

    (payload,) = job_payloads(publisher)
    flush_delay_s = (datetime.fromisoformat(payload["frames"][0]["enqueued_at"]) - frame.captured_at).total_seconds()
    assert max_wait_s <= flush_delay_s < max_wait_s + 0.2
    assert publisher.seconds_until_flush() is None


def test_poll_flushes_only_once_the_oldest_frame_is_due(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=100, max_wait_s=0.15)
    publisher.publish(make_frame())
    publisher.publish(make_frame())
    assert publisher.poll() == 0
    time.sleep(0.2)
    assert publisher.poll() == 2
    assert publisher.queue.count == 1


def test_job_is_plain_json_with_frame_metadata_and_keys(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=2)
    frames = [make_frame(), make_frame()]
    for frame in frames:
        publisher.publish(frame)
    assert publisher.queue.serializer is JSONSerializer

    (job_id,) = publisher.queue.job_ids
    raw = redis.hgetall(f"rq:job:{job_id}")
    # rq zlib-compresses the serialized call; what is inside must be JSON, not a pickle.
    function, instance, args, kwargs = json.loads(zlib.decompress(raw[b"data"]))
    assert (function, instance, kwargs) == ("worker.jobs.score_frames", None, {})
    (payload,) = args
    assert [item["frame_id"] for item in payload["frames"]] == [frame.frame_id for frame in frames]
    for item, frame in zip(payload["frames"], frames):
        assert item["key"] == frame_key(frame.frame_id)
        assert {k: item[k] for k in ("line", "camera", "source", "size")} == {
            "line": frame.line, "camera": frame.camera, "source": frame.source, "size": len(frame.data),
        }
        assert datetime.fromisoformat(item["captured_at"]) == frame.captured_at
        assert datetime.fromisoformat(item["enqueued_at"]) >= frame.captured_at
    assert b"image" not in zlib.decompress(raw[b"data"]), "frame bytes must not travel in the job"


def test_frame_bytes_are_stored_under_their_key_with_a_ttl(redis: Redis) -> None:
    frame_ttl_s = 120
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, frame_ttl_s=frame_ttl_s)
    frame = make_frame(data=b"\x89PNG not really")
    publisher.publish(frame)

    assert redis.get(frame_key(frame.frame_id)) == frame.data
    assert 0 < redis.ttl(frame_key(frame.frame_id)) <= frame_ttl_s
    assert redis.hget(PUBLISHED_KEY, "L1/C1") == b"1"


def test_drop_policy_drops_whole_batches_and_counts_them_per_stream(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=2, max_queued_jobs=1, policy="drop")
    kept = [make_frame("L1", "C1"), make_frame("L1", "C1")]
    dropped = [make_frame("L1", "C1"), make_frame("L2", "C9"), make_frame("L2", "C9"), make_frame("L2", "C9")]
    with caplog.at_level(logging.WARNING, logger="ingest.publisher"):
        for frame in kept + dropped:
            publisher.publish(frame)
        publisher.close()

    assert publisher.queue.count == 1
    assert (publisher.published, publisher.dropped) == (len(kept), len(dropped))
    assert redis.hgetall(DROPS_KEY) == {b"L1/C1": b"1", b"L2/C9": b"3"}
    assert all(redis.exists(frame_key(frame.frame_id)) for frame in kept)
    assert not any(redis.exists(frame_key(frame.frame_id)) for frame in dropped)
    # Two batches were dropped within the warning interval: one warning, not one per batch.
    drop_warnings = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(drop_warnings) == 1


def test_block_policy_waits_until_a_consumer_takes_a_job(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, max_queued_jobs=1, policy="block")
    publisher.publish(make_frame())
    consumer_delay_s = 0.3

    def consume_one_job() -> None:
        time.sleep(consumer_delay_s)
        redis.lpop(publisher.queue.key)

    consumer = threading.Thread(target=consume_one_job)
    consumer.start()
    started = time.monotonic()
    publisher.publish(make_frame())
    blocked_for = time.monotonic() - started
    consumer.join()

    assert blocked_for >= consumer_delay_s * 0.9
    assert publisher.queue.count == 1
    assert (publisher.published, publisher.dropped) == (2, 0)
    assert redis.hget(DROPS_KEY, "L1/C1") is None


def test_block_policy_gives_up_after_its_timeout_and_keeps_the_frames(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, max_queued_jobs=1, block_timeout_s=0.2)
    publisher.publish(make_frame())
    with pytest.raises(QueueFullError, match="block_timeout_s=0.2"):
        publisher.publish(make_frame())
    assert publisher.buffered == 1
    assert publisher.queue.count == 1


def test_queue_counters_report_depth_and_counts_per_line_and_camera(redis: Redis) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, max_queued_jobs=2, policy="drop")
    for frame in [make_frame("L1", "C1"), make_frame("L2", "C2"), make_frame("L2", "C2"), make_frame("L1", "C1")]:
        publisher.publish(frame)

    counters = queue_counters(redis, QUEUE)
    json.dumps(counters)  # the dashboard and `lineguard status` print it as is
    assert counters["queue"] == QUEUE
    assert counters["queued_jobs"] == 2
    assert (counters["published"], counters["dropped"]) == (2, 2)
    assert counters["streams"] == [
        {"line": "L1", "camera": "C1", "published": 1, "dropped": 1},
        {"line": "L2", "camera": "C2", "published": 1, "dropped": 1},
    ]


@pytest.mark.parametrize(
    ("argument", "value"),
    [("batch_size", 0), ("max_wait_s", -1), ("max_queued_jobs", 0), ("policy", "maybe"), ("frame_ttl_s", 0)],
)
def test_invalid_settings_are_refused_by_name(redis: Redis, argument: str, value: object) -> None:
    with pytest.raises(ValueError, match=argument):
        Publisher(redis, **{argument: value})


@pytest.mark.parametrize("name", ["", "a/b", " padded"])
def test_frames_refuse_line_names_that_break_the_counters(name: str) -> None:
    with pytest.raises(ValueError, match="line"):
        make_frame(line=name)


def test_frames_refuse_naive_capture_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Frame(new_frame_id(), "L1", "C1", "test", datetime.now(), b"x")


def test_frame_ids_are_unique_and_sort_by_creation_time() -> None:
    ids = []
    for _ in range(3):
        ids.append(new_frame_id())
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_a_stop_ends_the_wait_at_a_full_queue_and_keeps_the_unsent_frames(redis: Redis) -> None:
    stop = threading.Event()
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, max_queued_jobs=1, should_stop=stop.is_set)
    publisher.publish(make_frame())
    waiting = make_frame()
    stopper = threading.Timer(0.2, stop.set)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(PublishInterrupted, match="1 frames not sent"):
        publisher.publish(waiting)
    stopper.join()
    assert time.monotonic() - started < 1.0  # Ctrl-C is honoured within a second (BLOCK_POLL_S in fact)
    assert publisher.buffered == 1 and publisher.take_unsent() == [waiting] and publisher.buffered == 0
    assert (publisher.published, publisher.dropped, publisher.queue.count) == (1, 0, 1)
