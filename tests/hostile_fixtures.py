"""Hostile inputs and the means to survive them in tests: decompression bombs, memory caps, open watches.

Import what a module uses, e.g. ``from hostile_fixtures import jpeg_bomb, memory_capped``.
bench/hostile_files.py uses them too.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The size of the issue's bomb: 20000 x 20000 pixels, 1.2 GB once decoded to RGB.
BOMB_SIDE = 20_000
#: Side of the noise image whose JPEG data the bomb carries (about 6 MB at quality 95).
BOMB_NOISE_SIDE = 2300


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG ``data`` with its frame header (SOF) saying ``width`` x ``height``."""
    patched = bytearray(data)
    position = 2
    while True:  # segments after SOI: 0xFF, marker, 2-byte length counting itself
        marker = patched[position + 1]
        length = int.from_bytes(patched[position + 2 : position + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            patched[position + 5 : position + 9] = struct.pack(">HH", height, width)
            return bytes(patched)
        position += 2 + length


def jpeg_bomb(side: int = BOMB_SIDE, noise_side: int = BOMB_NOISE_SIDE, seed: int = 0) -> bytes:
    """A JPEG of a few MB whose header says ``side`` x ``side``: a decoder allocates the whole image first."""
    noise = np.random.default_rng(seed).integers(0, 256, size=(noise_side, noise_side, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return with_jpeg_size(encoded.tobytes(), side, side)


@dataclass(frozen=True)
class HostileFolder:
    """A folder written by `write_hostile_folder`, and what an ingester must make of it."""

    folder: Path
    #: A folder beside it, holding the regular file a symlink points out to.
    outside: Path
    #: Names of the files to be taken (each to end as one row; bomb.jpg and tiny.png as error rows).
    taken: frozenset[str]
    #: Name of each file to be skipped -> the reason (see ingest.file_checks.SKIP_REASONS).
    skipped: dict[str, str]
    #: Names of the taken files opened through another name (symlinks).
    opened_as: dict[str, str]


def write_hostile_folder(folder: Path, outside: Path, parts: list[np.ndarray], sparse_bytes: int) -> HostileFolder:
    """The issue's hostile folder, from ``parts`` (RGB uint8 images, at least two).

    Good parts as PNG (one also as WebP, and a symlink to one), a GIF, a 1x1 image, a 20000x20000
    JPEG bomb, a FIFO named x.png, a socket, symlinks to /etc/passwd, /dev/zero and a file outside,
    a sparse file of ``sparse_bytes`` (nothing on disk) and, as root, a device node like /dev/zero.
    """
    folder.mkdir()
    outside.mkdir()
    good = {f"good-{index}.png": part for index, part in enumerate(parts[1:])}
    for name, part in good.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(part, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(outside / "secret.png"), cv2.cvtColor(parts[0], cv2.COLOR_RGB2BGR))
    Image.fromarray(parts[0]).save(folder / "part.webp", lossless=True)
    Image.fromarray(parts[0]).save(folder / "part.gif")
    cv2.imwrite(str(folder / "tiny.png"), parts[0][:1, :1])
    (folder / "bomb.jpg").write_bytes(jpeg_bomb())
    first_good = next(iter(good))
    (folder / "link-to-good.png").symlink_to(first_good)
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "secret.png").symlink_to(outside / "secret.png")
    os.mkfifo(folder / "x.png")
    with socket.socket(socket.AF_UNIX) as unix_socket:
        unix_socket.bind(str(folder / "sock.png"))  # the socket file stays after the socket is closed
    with (folder / "huge.png").open("wb") as huge:
        huge.truncate(sparse_bytes)
    kind = ["passwd.png", "zero.png", "secret.png", "x.png", "sock.png"]
    if os.geteuid() == 0:
        os.mknod(folder / "zero-device.png", 0o600 | 0o020000, os.makedev(1, 5))
        kind.append("zero-device.png")
    return HostileFolder(
        folder=folder,
        outside=outside,
        taken=frozenset([*good, "part.webp", "tiny.png", "bomb.jpg", "link-to-good.png"]),
        skipped={**dict.fromkeys(kind, "kind"), "huge.png": "size", "part.gif": "extension"},
        opened_as={"link-to-good.png": first_good},
    )


def memory_capped(address_space_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps a child's address space, so that a test can never take the machine's memory."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))

    return cap


#: inotify's "a file was opened" event, and the flags of inotify_init1 (from <sys/inotify.h>).
IN_OPEN = 0x20
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class OpenWatch:
    """Names of the files opened in some folders, by any process, as the kernel reports them (inotify).

    Unlike polling /proc/PID/fd, it misses no open however short. It needs no strace and no root.
    """

    def __init__(self, folders: list[Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._folders: dict[int, Path] = {}
        for folder in folders:
            watch = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), IN_OPEN)
            if watch < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch failed on {folder}")
            self._folders[watch] = folder
        self.opened: set[Path] = set()

    def read(self) -> set[Path]:
        """Every file opened in the watched folders so far (the folders themselves excluded)."""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return self.opened
            offset = 0
            while offset < len(chunk):
                watch, _mask, _cookie, length = _EVENT_HEADER.unpack_from(chunk, offset)
                name = chunk[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length].rstrip(b"\0")
                if name:
                    self.opened.add(self._folders[watch] / os.fsdecode(name))
                offset += _EVENT_HEADER.size + length

    def close(self) -> None:
        os.close(self._fd)


#: What decoding one bomb may cost the decoding process, as the issue asks of a worker.
BOMB_BUDGET_BYTES = 100 * 2**20
#: Decodes each file given under an address-space cap of what the process has now plus the budget
#: (so that no test can take the machine's memory), and prints each outcome with the growth of its
#: peak resident memory (VmHWM, reset before each file through /proc/self/clear_refs).
MEASURE_DECODE = """
import json, resource, sys
from model.images import decode_image  # loads OpenCV and torch, as a worker has
def kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))
cap = kib("VmSize") * 1024 + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
results = {}
for path in sys.argv[2:]:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = kib("VmRSS")
    with open(path, "rb") as file:
        data = file.read()
    try:
        decode_image(data, path)
        outcome = "decoded"
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    results[path] = {"outcome": outcome, "growth_bytes": (kib("VmHWM") - before) * 1024}
print(json.dumps(results))
"""


def decode_costs(paths: list[Path], budget_bytes: int, timeout_s: float = 300) -> dict[str, dict[str, object]]:
    """Each file's outcome ("decoded" or the error) and peak-memory growth, decoded by `model.images.decode_image`
    in one fresh process capped at its address space after import plus ``budget_bytes``: path -> {outcome, growth_bytes}."""
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE_DECODE, str(budget_bytes), *map(str, paths)],
        capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT, check=True,
    )
    return json.loads(measured.stdout.strip().splitlines()[-1])
