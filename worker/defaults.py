"""Defaults of the worker, each documented where it is defined (imported by the CLI without torch)."""

#: Most frames scored in one forward pass; a job's frames are split to fit.
DEFAULT_BATCH_SIZE = 32
#: One good frame in this many keeps its image and heatmap (flagged frames always do).
DEFAULT_GOOD_SAMPLE_EVERY = 50
#: Seconds between two reads of the lines' active models from the store: the longest a change of
#: active model goes unnoticed by a running worker.
DEFAULT_MODEL_REFRESH_S = 5.0
#: Seconds a job stays leased to its worker without a heartbeat; a dead worker's jobs return after this.
DEFAULT_LEASE_S = 20
#: Times a job is handed back to the queue after its worker died or it failed, before it is failed.
DEFAULT_MAX_RETRIES = 3
#: How much longer than a lease a worker's own registration lives without a heartbeat (rq waits for
#: new jobs `worker_ttl - 15` seconds at a time, so this margin makes an idle wait last one lease).
WORKER_TTL_MARGIN_S = 15
#: Lease renewals per lease: a lease survives a few missed heartbeats.
HEARTBEATS_PER_LEASE = 4
#: Seconds an idle worker waits for a job at a time: a stop signal is seen between two waits (never
#: inside one, which may have taken a job), so an idle worker takes up to this long to stop.
STOP_POLL_S = 0.5
#: Seconds the thread listening for rq's commands (pubsub) waits at a time: a stopping worker waits for
#: it up to this long (rq's own 60 s held a SIGTERMed worker up to a minute).
COMMAND_LISTENER_POLL_S = 1.0
#: Frames larger than this many pixels on their longer side are scaled down to it as soon as they are
#: decoded: the model works at a fraction of it, and a reviewer's picture keeps its detail.
MAX_FRAME_SIDE = 2048
#: Largest file a worker reads for a frame sent by reference, unless told (LINEGUARD_MAX_FILE_MB): the
#: folder ingesters' own default limit (ingest.file_checks.DEFAULT_MAX_FILE_BYTES).
DEFAULT_MAX_REFERENCE_BYTES = 64 * 2**20
#: Megabytes of decoded frames (and their anomaly maps) a worker holds at once; a batch over it is
#: decoded and scored a few frames at a time.
DEFAULT_DECODE_BUDGET_MB = 512
#: Where frames are decoded and fitted when the worker's device is CUDA and `--decode-on-device` is
#: auto: on the device (nvJPEG), once measured per model against the host decoder (worker.device_decoding).
DEFAULT_DECODE_ON_DEVICE = "auto"
#: Largest difference of a raw score between a frame decoded on the device and on the host, as a share
#: of the model's threshold, for the device's decoding to be trusted with that model. The scaling is the
#: host's to one grey level (model.device_images), so what remains is the JPEG decoder's own rounding.
DEVICE_DECODE_TOLERANCE = 0.02
#: Frames whose scores are compared both ways, per model, before the device's decoding is trusted.
DEVICE_DECODE_CHECK_FRAMES = 16
