"""Frames sent by reference: a worker reads a path from the queue only inside its frame root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.errors import FrameReferenceError
from worker.references import frame_root, read_reference

LIMIT = 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shared" / "incoming"
    folder.mkdir(parents=True)
    return frame_root(folder)


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_a_file_inside_the_root_is_read_whole(root: Path) -> None:
    data = bytes(range(256)) * 3
    assert read_reference(write(root / "cam-1" / "part.png", data), root, len(data), LIMIT) == data
    # A symlink inside the root to a file inside the root is read too.
    (root / "latest.png").symlink_to(root / "cam-1" / "part.png")
    assert read_reference(str(root / "latest.png"), root, len(data), LIMIT) == data


@pytest.mark.parametrize(
    "reference, why",
    [
        ("{root}/../secret.png", "not an absolute, normal path"),
        ("{root}/cam-1/../../secret.png", "not an absolute, normal path"),
        ("{root}/./part.png", "not an absolute, normal path"),
        ("{root}//part.png", "not an absolute, normal path"),
        ("relative/part.png", "not an absolute, normal path"),
        ("{outside}", "outside the frame root"),
        ("{root}-sibling/part.png", "outside the frame root"),
    ],
)
def test_a_path_that_leaves_the_root_is_refused_before_it_is_opened(root: Path, reference: str, why: str) -> None:
    secret = root.parent / "secret.png"
    write(secret, b"secret")
    write(Path(f"{root}-sibling/part.png"), b"secret")
    with pytest.raises(FrameReferenceError, match=why):
        read_reference(reference.format(root=root, outside=secret), root, 6, LIMIT)


def test_symlinks_out_of_the_root_are_refused_for_files_and_folders(root: Path) -> None:
    secret = root.parent / "secret.png"
    write(secret, b"secret")
    (root / "link.png").symlink_to(secret)
    (root / "linked-folder").symlink_to(root.parent)
    for reference in (root / "link.png", root / "linked-folder" / "secret.png"):
        with pytest.raises(FrameReferenceError, match="outside the frame root"):
            read_reference(str(reference), root, 6, LIMIT)


def test_special_large_changed_and_missing_files_are_refused(root: Path) -> None:
    fifo = root / "fifo.png"
    os.mkfifo(fifo)  # opened without blocking, and refused: no writer could make the worker wait
    with pytest.raises(FrameReferenceError, match="not a regular file"):
        read_reference(str(fifo), root, 0, LIMIT)
    with pytest.raises(FrameReferenceError, match="not a regular file"):
        read_reference(str(root), root, 0, LIMIT)
    big = write(root / "big.png", b"x" * (LIMIT + 1))
    with pytest.raises(FrameReferenceError, match=f"over the limit of {LIMIT}"):
        read_reference(big, root, LIMIT + 1, LIMIT)
    rewritten = write(root / "rewritten.png", b"new content")
    with pytest.raises(FrameReferenceError, match="rewritten since"):
        read_reference(rewritten, root, 5, LIMIT)
    with pytest.raises(FrameReferenceError, match="gone or unreachable"):
        read_reference(str(root / "gone.png"), root, 5, LIMIT)


def test_a_worker_without_a_frame_root_reads_no_reference(root: Path) -> None:
    path = write(root / "part.png", b"bytes")
    with pytest.raises(FrameReferenceError, match="no --frame-root"):
        read_reference(path, None, 5, LIMIT)


def test_the_frame_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an existing directory"):
        frame_root(tmp_path / "missing")
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert frame_root(tmp_path / "alias") == (tmp_path / "real").resolve()
