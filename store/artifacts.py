"""Artifact storage: the image and heatmap overlay files that inspection rows refer to by key.

A key is a relative slash path such as ``line-1/cam-0/2025-11-28/frame-123.heatmap.png``. Stores are
opened from a storage URL; only the filesystem backend exists (``file:///abs/path`` or a plain
folder path), and another backend (a bucket) would implement the same :class:`ArtifactStore` protocol.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from store.errors import ArtifactError, ArtifactNotFoundError

#: Storage used when no URL is given: a folder relative to the working directory.
DEFAULT_ARTIFACT_URL = "lineguard-data/artifacts"
#: Longest key, the width of the ``image_key``/``heatmap_key`` columns.
ARTIFACT_KEY_MAX_LENGTH = 512
#: Mode of artifact files: readable by a dashboard running as another user.
ARTIFACT_FILE_MODE = 0o644
# One key component: letters, digits, '_', '-', '.', '=', '+', not starting with '.' (no '..', no hidden files).
_KEY_COMPONENT = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*")
# Characters a key part may hold; anything else in a name becomes '_' in `key_part`.
_UNSAFE_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_=+.-]")


class ArtifactStore(Protocol):
    """Where artifacts live; every method takes a key checked by :func:`check_artifact_key`."""

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (replacing what was there, atomically); returns the key."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; raises ArtifactNotFoundError when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""
        ...

    def url_for(self, key: str) -> str:
        """A URL at which the artifact under ``key`` can be read."""
        ...

    def entries(self) -> Iterator[ArtifactEntry]:
        """Every artifact stored, with its size and when it was written (for retention)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the artifact under ``key``, if there is one."""
        ...


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    """One stored artifact: its key, bytes and when it was written (UTC)."""

    key: str
    size: int
    written_at: datetime


def check_artifact_key(key: str) -> str:
    """Return ``key`` if it is a safe relative slash path, else raise ArtifactError saying why."""
    if not isinstance(key, str) or not key:
        raise ArtifactError(f"artifact key must be a non-empty string, got {key!r}")
    if len(key) > ARTIFACT_KEY_MAX_LENGTH:
        raise ArtifactError(f"artifact key {key[:40]!r}... is longer than {ARTIFACT_KEY_MAX_LENGTH} characters")
    if key.startswith("/"):
        raise ArtifactError(f"artifact key {key!r} is absolute; keys are relative slash paths")
    for component in key.split("/"):
        if not _KEY_COMPONENT.fullmatch(component):
            raise ArtifactError(
                f"artifact key {key!r} has the invalid part {component!r}: parts are non-empty, use only "
                "letters, digits and _ - . = +, and may not start with '.' (so no '..')"
            )
    return key


def key_part(name: str) -> str:
    """`name` (a line, camera, frame id, model version) as one key part: unsafe characters
    replaced, no leading dot, not empty."""
    return _UNSAFE_KEY_CHARACTERS.sub("_", name).lstrip(".") or "_"


class FileArtifactStore:
    """Artifacts as files under a root folder, written atomically (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        """Store under ``root`` (made absolute now; created on the first write)."""
        self.root = root.expanduser().absolute()

    def put(self, key: str, data: bytes) -> str:
        """Write ``data`` to the key's file so that readers see the old file or the new one, never a part."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The temporary name starts with '.', which no key may, so it never shadows an artifact.
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.chmod(temporary, ARTIFACT_FILE_MODE)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise ArtifactError(f"cannot write artifact {key!r} to {target}: {error}") from error
        return key

    def get(self, key: str) -> bytes:
        """The bytes of the key's file."""
        target = self._path(key)
        try:
            return target.read_bytes()
        except FileNotFoundError as error:
            raise ArtifactNotFoundError(f"no artifact {key!r} (looked for {target})") from error
        except OSError as error:
            raise ArtifactError(f"cannot read artifact {key!r} from {target}: {error}") from error

    def exists(self, key: str) -> bool:
        """Whether the key's file exists."""
        return self._path(key).is_file()

    def url_for(self, key: str) -> str:
        """The ``file://`` URL of the key's file."""
        return self._path(key).as_uri()

    def entries(self) -> Iterator[ArtifactEntry]:
        """The files under the root whose relative paths are valid keys (temporary files are not)."""
        if not self.root.is_dir():
            return
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder, name)
                key = path.relative_to(self.root).as_posix()
                try:
                    check_artifact_key(key)
                    status = path.stat()
                except (ArtifactError, OSError):
                    continue  # a temporary file, or one removed meanwhile
                yield ArtifactEntry(key, status.st_size, datetime.fromtimestamp(status.st_mtime, UTC))

    def delete(self, key: str) -> None:
        """Remove the key's file (nothing when there is none)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as error:
            raise ArtifactError(f"cannot delete artifact {key!r}: {error}") from error

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_artifact_key(key).split("/"))


def open_artifact_store(url: str | None = None) -> ArtifactStore:
    """The artifact store at ``url``: ``file:///abs/path`` or a folder path (default ``lineguard-data/artifacts``)."""
    chosen = url or DEFAULT_ARTIFACT_URL
    parts = urlsplit(chosen)
    if parts.scheme == "":
        return FileArtifactStore(Path(chosen))
    if parts.scheme != "file":
        raise ArtifactError(
            f"artifact storage URL {chosen!r} has the unsupported scheme {parts.scheme!r}; "
            "use file:///absolute/folder or a folder path"
        )
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(f"artifact storage URL {chosen!r} names host {parts.netloc!r}; only local files work")
    folder = Path(url2pathname(parts.path))  # decodes %-escapes
    if not folder.is_absolute():
        raise ArtifactError(f"artifact storage URL {chosen!r} must hold an absolute path (file:///...)")
    return FileArtifactStore(folder)
