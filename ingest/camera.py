"""Opening a camera or stream honestly: at once or with its reason, without stale buffered frames,
and with a read that gives up at the stall timeout.

- FFmpeg is asked not to buffer or probe (`LOW_LATENCY_OPTIONS`, unless OPENCV_FFMPEG_CAPTURE_OPTIONS
  is set): an RTSP camera opens in about 0.1 s instead of 2 s, and no second of probed frames is
  handed out afterwards as if just captured.
- Open and read time out at the stall timeout, so a frozen stream (server alive, no frames) ends
  the read then; the caller releases the capture and opens a new one, so nothing buffered before the
  freeze is published later.
- `why_unavailable` says why a source could not be opened, in words a line engineer can act on.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import cv2

#: FFmpeg options of a live stream: TCP for RTSP (no lost packets, no smeared frames), no probing
#: beyond the first packet, no input buffering.
LOW_LATENCY_OPTIONS = "rtsp_transport;tcp|analyzeduration;0|probesize;32|fflags;nobuffer"
_OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
#: Seconds a reachability check of a stream's host may take.
PROBE_TIMEOUT_S = 2.0


def open_capture(target: str | int, live_stream: bool, timeout_s: float) -> cv2.VideoCapture | None:
    """An opened capture of `target`, or None; opening and each read time out after `timeout_s`."""
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000)]
    if isinstance(target, int):
        capture = cv2.VideoCapture(target)
    elif live_stream and _OPTIONS_VARIABLE not in os.environ:  # a user's own options win
        # OpenCV's FFmpeg backend reads the options from the environment at each open, and only
        # then: set for this open alone (a file opened with them would lose its first frame).
        os.environ[_OPTIONS_VARIABLE] = LOW_LATENCY_OPTIONS
        try:
            capture = cv2.VideoCapture(target, cv2.CAP_ANY, timeouts)
        finally:
            del os.environ[_OPTIONS_VARIABLE]
    else:
        capture = cv2.VideoCapture(target, cv2.CAP_ANY, timeouts)
    if capture.isOpened():
        return capture
    capture.release()
    return None


def why_unavailable(target: str | int) -> str:
    """Why `target` (a file path, camera index or URL) could not be opened, as far as can be told."""
    if isinstance(target, int):
        device = Path(f"/dev/video{target}")
        if not device.exists():
            return f"there is no camera {target} ({device} does not exist)"
        if not os.access(device, os.R_OK):
            return f"camera {target} ({device}) is not readable by this user"
        return f"camera {target} ({device}) exists but would not open (busy, or not a video capture device)"
    if "://" not in target:
        path = Path(target)
        if not path.exists():
            return f"no such file: {path}"
        if not path.is_file():
            return f"{path} is not a file"
        if not os.access(path, os.R_OK):
            return f"{path} is not readable by this user"
        return f"{path} is not a video OpenCV can read"
    parts = urlsplit(target)
    host = parts.hostname or ""
    port = parts.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}.get(parts.scheme)
    if port is None:
        return f"{parts.scheme}:// streams are not known to OpenCV's FFmpeg here"
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except socket.gaierror:
        return f"host {host!r} is unknown"
    except TimeoutError:
        return f"{host}:{port} does not answer (timed out after {PROBE_TIMEOUT_S:g} s)"
    except OSError as error:
        return f"{host}:{port} refused the connection ({error.strerror or error})"
    return f"{host}:{port} answers but serves no stream at {parts.path or '/'} (wrong path, or not a video stream)"
