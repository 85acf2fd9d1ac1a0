"""Capture to published verdict: p50 and p99 at a steady rate and at the line's maximum frames/s.

The whole path of a line on this machine: frames published through the real Publisher into Redis,
scored by `lineguard worker` processes, queued in the outbox with their rows, sent by `lineguard
relay` to the MQTT broker with QoS 1, received by a subscriber here; latency is the subscriber's
arrival time minus the frame's capture time (one clock). Phases:
1. the line's maximum: --frames published at once, frames/s from the first publish to the last verdict;
2. --seconds of frames at --fps (default 5), then as long again at the measured maximum, each paced
   as a camera would send them (jobs of up to --batch-size frames or --max-wait s, the ingest CLI's
   defaults): p50 and p99 of capture to published verdict.

    .venv/bin/python bench/verdict_latency.py [--checkpoint MODEL.pt] [--fps 5] [--seconds 30]
        [--workers 1] [--broker mqtt://127.0.0.1:1883]

Without --checkpoint a model of the default recipe is trained briefly (bench/pipeline.py; speed does not
depend on training). Redis is REDIS_URL; the store is SQLite in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from rq import SimpleWorker

sys.path.append(str(Path(__file__).resolve().parent))

from pipeline import REPO_ROOT, bench_line, forget_bench_keys, generated_frames, start_worker, train_briefly, wait_for  # noqa: E402

from ingest.frames import Frame, new_frame_id  # noqa: E402
from ingest.publisher import Publisher  # noqa: E402
from model.checkpoint import read_checkpoint  # noqa: E402
from wire.protocol import make_queue  # noqa: E402
from wire.verdicts import VERDICT_KIND, decode_message  # noqa: E402


class Subscriber:
    """Arrival time (time.time()) of each frame id's first verdict."""

    def __init__(self, broker: str, topic: str) -> None:
        host, _, port = broker.removeprefix("mqtt://").partition(":")
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        client = Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = self._arrived
        client.connect(host, int(port or 1883))
        client.loop_start()
        if not ready.wait(10):
            raise SystemExit(f"could not subscribe to {topic} on {broker}")
        self.client = client

    def _arrived(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        now = time.time()
        frame_id = decode_message(message.payload).frame_id
        with self.lock:
            self.arrivals.setdefault(frame_id, now)

    def count(self, frame_ids: list[str]) -> int:
        with self.lock:
            return sum(frame_id in self.arrivals for frame_id in frame_ids)


def publish(publisher: Publisher, line: str, frames: list[bytes], rate: float | None) -> list[tuple[str, float]]:
    """Publish `frames` (at once, or at `rate` frames/s); returns (frame id, capture time)."""
    sent = []
    started = time.perf_counter()
    for index, data in enumerate(frames):
        if rate is not None:
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
        captured = datetime.now(UTC)
        frame = Frame(new_frame_id(), line, "cam-1", "bench:verdict-latency", captured, data, f"part {index}")
        publisher.publish(frame)
        sent.append((frame.frame_id, captured.timestamp()))
    publisher.flush()
    return sent


def latencies(subscriber: Subscriber, sent: list[tuple[str, float]]) -> np.ndarray:
    return np.array([subscriber.arrivals[frame_id] - captured for frame_id, captured in sent])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="model to use (default: train one of the default recipe briefly)")
    parser.add_argument("--fps", type=float, default=5.0, help="the steady rate (default 5)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of frames per paced phase (default 30)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the maximum-rate phase (default 96)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1: one takes every core)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per job (default 8, as ingest)")
    parser.add_argument("--max-wait", type=float, default=0.5, help="longest wait for a job to fill (default 0.5 s, as ingest)")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--max-memory-gb", type=float, default=16.0, help="address-space cap of each process")
    args = parser.parse_args()
    cap = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # inherited by the workers and the relay

    with tempfile.TemporaryDirectory(prefix="lineguard-verdicts-") as folder:
        workdir = Path(folder)
        checkpoint = args.checkpoint or train_briefly(workdir)
        image_size = read_checkpoint(checkpoint)["recipe"]["image_size"]
        settings, line, redis, engine = bench_line(workdir, "verdicts", checkpoint)
        prefix = f"bench{os.getpid()}"
        settings = settings.model_copy(update={"mqtt_url": args.broker, "mqtt_topic_prefix": prefix})
        subscriber = Subscriber(args.broker, f"{prefix}/+/+/{VERDICT_KIND}")  # not the alarms: a model of other parts drifts
        processes = [start_worker(settings, "cpu", args.batch_size, workdir / f"worker-{n}.log") for n in range(args.workers)]
        with (workdir / "relay.log").open("wb") as log_file:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "lineguard.cli", "relay"], env={**os.environ, **settings.environment()},
                stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            ))
        paced = max(int(args.seconds * args.fps), 1)
        encoded = generated_frames(max(args.frames, paced, 1) + args.batch_size, image_size)
        try:
            wait_for(lambda: SimpleWorker.count(queue=make_queue(redis, settings.queue_name)) == args.workers, 120, "the workers")

            def run(frames: list[bytes], rate: float | None, max_wait: float) -> list[tuple[str, float]]:
                publisher = Publisher(redis, queue_name=settings.queue_name, batch_size=args.batch_size, max_wait_s=max_wait, max_queued_jobs=10_000)
                sent = publish(publisher, line, frames, rate)
                ids = [frame_id for frame_id, _ in sent]
                wait_for(lambda: subscriber.count(ids) == len(ids), 600, f"{len(ids)} verdicts")
                return sent

            run(encoded[: args.batch_size], None, 3600.0)  # warm up: models loaded, connections made
            started = time.time()
            sent = run(encoded[: args.frames], None, 3600.0)
            maximum = len(sent) / (max(subscriber.arrivals[frame_id] for frame_id, _ in sent) - started)
            print(
                f"model {checkpoint.name} ({image_size} px), {args.workers} worker(s), {os.cpu_count()} CPU cores: "
                f"line maximum {maximum:.1f} frames/s ({len(sent)} frames at once, to the last published verdict)",
                flush=True,
            )
            for rate in (args.fps, maximum):
                frames = encoded[: max(int(args.seconds * rate), 1)]
                values = latencies(subscriber, run(frames, rate, args.max_wait))
                print(
                    f"at {rate:.1f} frames/s for {len(frames) / rate:.0f} s (jobs of up to {args.batch_size} frames or "
                    f"{args.max_wait:g} s): capture to published verdict p50 {np.percentile(values, 50):.2f} s, "
                    f"p99 {np.percentile(values, 99):.2f} s, max {values.max():.2f} s over {len(values)} frames",
                    flush=True,
                )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
            subscriber.client.loop_stop()
            forget_bench_keys(redis, settings.queue_name, line)
            engine.dispose()


if __name__ == "__main__":
    main()
