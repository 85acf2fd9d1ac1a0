"""Hostile inputs and the means to survive them in tests: decompression bombs, memory caps, open watches.

Import what a module uses, e.g. ``from hostile_fixtures import jpeg_bomb, memory_capped``.
bench/hostile_files.py uses them too.
"""

from __future__ import annotations

import ctypes
import os
import resource
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

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
