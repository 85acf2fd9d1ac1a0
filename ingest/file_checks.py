"""Which files of a watched folder may be read, and reading them without being fooled.

Anyone who can write to a watched folder can put anything there: a FIFO that blocks its reader
forever, a symlink to /etc/passwd or /dev/zero, a file of many gigabytes. A file is taken only if

- its name ends with an accepted image extension;
- ``lstat`` says it is a regular file, or a symlink whose fully resolved target is a regular file
  inside the watched folder (FIFOs, sockets and devices are never opened);
- it is at most ``max_bytes`` long.

The file may be swapped between that check and the read, so it is opened with ``O_NONBLOCK``
(a FIFO swapped in cannot block) and ``O_NOFOLLOW`` (nor can a symlink), checked again with
``fstat`` (a regular file, the very one checked), and read only up to ``max_bytes + 1`` bytes (a
file that grew is refused, not read to its end). Each refusal is a `FileSkippedError` whose reason
is one of `SKIP_REASONS`.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ingest.errors import FileSkippedError

#: Why a file is skipped: not a regular file (or a symlink to one inside the folder), over the
#: size limit, not an image by its extension, or it could not be read.
SkipReason = Literal["kind", "size", "extension", "unreadable"]
SKIP_REASONS: tuple[SkipReason, ...] = ("kind", "size", "extension", "unreadable")
#: Largest file taken unless told otherwise: any compressed frame within the decoders' pixel limit
#: (64 MP), or an uncompressed 8-bit RGB frame of about 22 MP. An ingester holds up to a batch of them.
DEFAULT_MAX_FILE_BYTES = 64 * 2**20
#: How files are opened: never blocking on a FIFO, never following a symlink, not inherited by children.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed the checks, as it was when checked."""

    path: Path
    """Where it is listed in the folder (for a symlink: the link)."""
    target: Path
    """The regular file to read: `path` itself, or the link's resolved target inside the folder."""
    size: int
    mtime: float
    device: int
    inode: int


def check_file(path: Path, folder: Path, extensions: tuple[str, ...], max_bytes: int) -> CheckedFile:
    """``path`` (a file listed in the resolved ``folder``) if it may be read; else raises FileSkippedError saying why.

    Extensions are compared in lower case. Only ``lstat`` and ``stat`` are used: nothing is opened.
    FileNotFoundError propagates when the file vanished meanwhile.
    """
    if not path.name.lower().endswith(extensions):
        raise FileSkippedError("extension", path, f"not an image by its extension (taken: {', '.join(extensions)})")
    status = os.lstat(path)
    target = path
    if stat.S_ISLNK(status.st_mode):
        try:
            target = Path(os.path.realpath(path, strict=True))
        except OSError as error:  # a broken link, or a loop
            raise FileSkippedError("kind", path, f"a symlink that does not resolve ({error.strerror})") from error
        if not target.is_relative_to(folder):
            raise FileSkippedError("kind", path, f"a symlink to {target}, outside the watched folder")
        status = os.stat(target, follow_symlinks=False)  # realpath resolved every link: this is the file itself
        if not stat.S_ISREG(status.st_mode):
            raise FileSkippedError("kind", path, f"a symlink to {describe_kind(status.st_mode)}, not to a regular file")
    elif not stat.S_ISREG(status.st_mode):
        raise FileSkippedError("kind", path, f"{describe_kind(status.st_mode)}, not a regular file")
    if status.st_size > max_bytes:
        raise FileSkippedError("size", path, f"{status.st_size} bytes, over the limit of {max_bytes}")
    return CheckedFile(path, target, status.st_size, status.st_mtime, status.st_dev, status.st_ino)


def open_checked(file: CheckedFile) -> BinaryIO:
    """Open ``file``'s target for reading, as the very regular file that was checked.

    Raises FileSkippedError ("kind") when what is there now is no regular file, FileNotFoundError
    when it vanished or is another file now, and OSError when it cannot be opened.
    """
    try:
        descriptor = os.open(file.target, OPEN_FLAGS)
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        if error.errno in (errno.ELOOP, errno.ENXIO):  # swapped for a symlink, or a socket
            raise FileSkippedError("kind", file.path, "replaced by a symlink or socket since it was checked") from error
        raise
    handle = os.fdopen(descriptor, "rb", buffering=0)
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        handle.close()
        raise FileSkippedError("kind", file.path, f"replaced by {describe_kind(status.st_mode)} since it was checked")
    if (status.st_dev, status.st_ino) != (file.device, file.inode):
        handle.close()
        # The checked file is gone; whatever replaced it is checked afresh at the next scan.
        raise FileNotFoundError(errno.ENOENT, "replaced by another file since it was checked", str(file.path))
    return handle


def read_at_most(handle: BinaryIO, file: CheckedFile, max_bytes: int) -> bytes:
    """The whole content of ``handle``, refused (FileSkippedError, "size") once it is over ``max_bytes``."""
    data = bytearray()
    while len(data) <= max_bytes:
        chunk = handle.read(max_bytes + 1 - len(data))
        if not chunk:
            return bytes(data)
        data += chunk
    raise FileSkippedError("size", file.path, f"grew over the limit of {max_bytes} bytes since it was checked")


def read_checked(file: CheckedFile, max_bytes: int) -> bytes:
    """The bytes of the very file ``file`` checked (`open_checked`, then `read_at_most`)."""
    with open_checked(file) as handle:
        return read_at_most(handle, file, max_bytes)


def describe_kind(mode: int) -> str:
    """What kind of file ``mode`` (an ``st_mode``) is, for messages."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symlink"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")
