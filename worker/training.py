"""`lineguard worker --train`: the process that runs queued training jobs (wire.training_jobs), one
at a time, apart from scoring workers and the dashboard (typically on the GPU machine).

A heartbeat thread renews the running job's report while it trains, so a killed training worker's
job reads as abandoned within `wire.training_jobs.STALE_AFTER_S` instead of running forever.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from redis import Redis
from sqlalchemy import Engine

from lineguard.retraining import default_candidate_path, gather_training_data, retrain
from model.recipe import TrainingSettings
from store.artifacts import ArtifactStore
from store.records import active_model_info
from wire.training_jobs import DONE, FAILED, HEARTBEAT_S, TrainingJob, renew_heartbeat, report_training, take_training

logger = logging.getLogger(__name__)

#: Seconds a training worker waits for a job before looking at its stop flag again.
TAKE_TIMEOUT_S = 2.0


def run_training_worker(
    redis: Redis, engine: Engine, artifacts: ArtifactStore, name: str, device: str, stop: threading.Event, burst: bool = False
) -> int:
    """Run training jobs until `stop` is set (with `burst`, until the queue is empty); returns how many ran."""
    ran = 0
    while not stop.is_set():
        job = take_training(redis, name, TAKE_TIMEOUT_S)
        if job is None:
            if burst:
                break
            continue
        run_training_job(redis, engine, artifacts, job, device)
        ran += 1
    return ran


def run_training_job(redis: Redis, engine: Engine, artifacts: ArtifactStore, job: TrainingJob, device: str) -> None:
    """Retrain as `job` asks and report it done with the candidate's version, or failed saying why."""
    request = job.request
    beating = threading.Event()
    heartbeat = threading.Thread(target=_beat, args=(redis, job.id, beating), daemon=True, name=f"heartbeat-{job.id}")
    heartbeat.start()
    try:
        report_training(redis, job.id, phase="gathering the line's pictures")
        base = active_model_info(engine, request.line)
        out = default_candidate_path(base, request.line)
        data = gather_training_data(
            engine, artifacts, base, request.line, out.with_name(out.stem + ".data"),
            Path(request.data) if request.data else None, [Path(folder) for folder in request.extra],
        )
        report_training(
            redis, job.id,
            phase=f"training on {data.original_images} original images, {data.false_alarms} false alarms, {data.passed_parts} passed parts"
            + (f"; {data.calibration_parts} line pictures held out for its threshold" if data.calibration_parts else ""),
        )
        settings = TrainingSettings(device=device, **({"steps": request.steps} if request.steps else {}))
        result = retrain(engine, base, data, out, settings)
    except Exception as error:  # noqa: BLE001 - whatever fails, the job says so and the worker takes the next
        logger.exception("training job %s for line %s failed", job.id, request.line)
        report_training(redis, job.id, state=FAILED, phase="", error=f"{type(error).__name__}: {error}")
    else:
        logger.info("training job %s: candidate %s for line %s", job.id, result.version, request.line)
        report_training(redis, job.id, state=DONE, phase="", candidate=result.version)
    finally:
        beating.set()
        heartbeat.join()


def _beat(redis: Redis, job_id: str, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_S):
        try:
            renew_heartbeat(redis, job_id)
        except Exception:  # noqa: BLE001 - a missed heartbeat is not the training's failure
            logger.warning("training job %s: heartbeat not written", job_id)
