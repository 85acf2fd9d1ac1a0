"""Reading a frame sent by reference: a path from the queue, read only inside the worker's frame root.

A job's entry may name a file instead of carrying bytes (`wire.protocol.FrameEntry.reference`). The
path comes from Redis, which anyone who can write to the queue controls, so it is checked here, at
the boundary, before any byte is read:

- the worker has a frame root (`lineguard worker --frame-root`, LINEGUARD_FRAME_ROOT); without one
  it reads no reference at all;
- the path is absolute and already normal (no ``..``, ``.`` or doubled separators), lies inside the
  root as written and, once every symlink is resolved, still inside it;
- it is a regular file (opened with ``O_NOFOLLOW | O_NONBLOCK``, so neither a link swapped in nor a
  FIFO can fool or block the read), of at most the size limit, and of the size it had when it was
  sent (a file rewritten since is another frame);
- the file actually opened is inside the root (its ``/proc/self/fd`` link), which also catches a
  folder of the path swapped for a symlink between the check and the open.

Each refusal is a `FrameReferenceError` whose message names the path and the reason: the frame gets
an error row saying it, like a frame that does not decode.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from worker.errors import FrameReferenceError

#: How a referenced file is opened: never blocking on a FIFO, never following a final symlink.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def frame_root(path: str | Path) -> Path:
    """The resolved frame root, which must be an existing directory; ValueError naming it if not."""
    root = Path(os.path.realpath(path))
    if not root.is_dir():
        raise ValueError(f"--frame-root {str(path)!r} is not an existing directory")
    return root


def read_reference(reference: str, root: Path | None, expected_size: int, max_bytes: int) -> bytes:
    """The bytes of the file `reference` names, if it lies inside `root` (resolved, see `frame_root`)
    and passes every check of the module's docstring; FrameReferenceError saying why otherwise."""
    if root is None:
        raise FrameReferenceError(f"{reference!r}: the frame was sent by reference, and this worker has no --frame-root to read it in")
    if not reference.startswith("/") or "\0" in reference or os.path.normpath(reference) != reference:
        raise FrameReferenceError(f"{reference!r}: not an absolute, normal path (no '..', '.' or doubled '/')")
    path = Path(reference)
    if not path.is_relative_to(root):
        raise FrameReferenceError(f"{reference}: outside the frame root {root}")
    try:
        resolved = Path(os.path.realpath(path, strict=True))
    except OSError as error:
        raise FrameReferenceError(f"{reference}: the frame's file is gone or unreachable ({error.strerror})") from error
    if not resolved.is_relative_to(root):
        raise FrameReferenceError(f"{reference}: resolves to {resolved}, outside the frame root {root}")
    try:
        descriptor = os.open(resolved, OPEN_FLAGS)
    except OSError as error:
        reason = "replaced by a symlink or socket since it was checked" if error.errno in (errno.ELOOP, errno.ENXIO) else error.strerror
        raise FrameReferenceError(f"{reference}: cannot be opened ({reason})") from error
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise FrameReferenceError(f"{reference}: not a regular file")
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        opened = Path(os.readlink(f"/proc/self/fd/{descriptor}")) if os.path.exists("/proc/self/fd") else resolved
        if not opened.is_relative_to(root):
            raise FrameReferenceError(f"{reference}: the file opened is {opened}, outside the frame root {root}")
        if status.st_size > max_bytes:
            raise FrameReferenceError(f"{reference}: {status.st_size} bytes, over the limit of {max_bytes}")
        if status.st_size != expected_size:
            raise FrameReferenceError(f"{reference}: {status.st_size} bytes, not the {expected_size} it had when it was sent (rewritten since)")
        data = bytearray()
        while len(data) <= max_bytes and (chunk := handle.read(max_bytes + 1 - len(data))):
            data += chunk
    if len(data) != expected_size:
        raise FrameReferenceError(f"{reference}: read {len(data)} bytes, not the {expected_size} it had when it was sent (changed while read)")
    return bytes(data)
