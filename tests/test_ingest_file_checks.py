"""The checks a watched folder's files pass before and while they are read, one kind of file at a time."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.errors import FileSkippedError
from ingest.file_checks import CheckedFile, check_file, open_checked, read_at_most

EXTENSIONS = (".png", ".jpg")
LIMIT = 1000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    watched = tmp_path / "watched"
    watched.mkdir()
    return watched.resolve()


def checked(folder: Path, name: str) -> CheckedFile:
    return check_file(folder / name, folder, EXTENSIONS, LIMIT)


def skip_of(folder: Path, name: str) -> FileSkippedError:
    with pytest.raises(FileSkippedError) as caught:
        checked(folder, name)
    return caught.value


@pytest.fixture
def listening_socket(folder: Path) -> Iterator[Path]:
    path = folder / "sock.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    try:
        yield path
    finally:
        server.close()


def test_a_regular_image_and_a_symlink_to_one_inside_the_folder_pass(folder: Path) -> None:
    (folder / "part.PNG").write_bytes(b"x" * LIMIT)  # the extension is compared without case; the limit is inclusive
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.jpg").write_bytes(b"y")
    (folder / "link.png").symlink_to("sub/deep.jpg")
    plain = checked(folder, "part.PNG")
    assert (plain.path, plain.target, plain.size) == (folder / "part.PNG", folder / "part.PNG", LIMIT)
    link = checked(folder, "link.png")
    assert (link.path, link.target, link.size) == (folder / "link.png", folder / "sub" / "deep.jpg", 1)
    with open_checked(link) as handle:
        assert read_at_most(handle, link, LIMIT) == b"y"


def test_special_files_and_symlinks_to_anything_else_are_refused_by_kind(folder: Path, tmp_path: Path, listening_socket: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"secret")
    os.mkfifo(folder / "x.png")
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "outside.png").symlink_to(outside)
    (folder / "hop.png").symlink_to("outside.png")  # inside, but resolving to outside
    (folder / "broken.png").symlink_to(folder / "nowhere.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "sub").mkdir()
    (folder / "dir.png").symlink_to("sub")
    (folder / "fifo-link.png").symlink_to("x.png")
    expected = {
        "x.png": "a FIFO (named pipe), not a regular file",
        "sock.png": "a socket, not a regular file",
        "passwd.png": "a symlink to /etc/passwd, outside the watched folder",
        "zero.png": "a symlink to /dev/zero, outside the watched folder",
        "outside.png": f"a symlink to {outside.resolve()}, outside the watched folder",
        "hop.png": f"a symlink to {outside.resolve()}, outside the watched folder",
        "broken.png": "a symlink that does not resolve (No such file or directory)",
        "loop.png": "a symlink that does not resolve (Too many levels of symbolic links)",
        "dir.png": "a symlink to a directory, not to a regular file",
        "fifo-link.png": "a symlink to a FIFO (named pipe), not to a regular file",
    }
    for name, detail in expected.items():
        skip = skip_of(folder, name)
        assert (skip.reason, skip.path) == ("kind", folder / name)
        assert str(skip).startswith(f"{folder / name}: ") and detail in str(skip), str(skip)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_is_refused_by_kind(folder: Path) -> None:
    os.mknod(folder / "zero-dev.png", 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero's twin
    skip = skip_of(folder, "zero-dev.png")
    assert skip.reason == "kind" and "a character device" in str(skip)


def test_other_extensions_and_files_over_the_limit_are_refused_unread(folder: Path) -> None:
    (folder / "notes.txt").write_bytes(b"text")
    (folder / "anim.gif").write_bytes(b"GIF89a")
    with (folder / "huge.png").open("wb") as huge:
        huge.truncate(64 * 2**30)  # sparse: 64 GiB that take no disk and must never be read
    (folder / "huge-link.png").symlink_to("huge.png")
    for name in ("notes.txt", "anim.gif"):
        skip = skip_of(folder, name)
        assert skip.reason == "extension" and "not an image by its extension (taken: .png, .jpg)" in str(skip)
    for name in ("huge.png", "huge-link.png"):
        skip = skip_of(folder, name)
        assert skip.reason == "size" and f"{64 * 2**30} bytes, over the limit of {LIMIT}" in str(skip)


def test_a_file_swapped_for_a_fifo_or_a_symlink_after_its_check_is_refused_without_blocking(folder: Path) -> None:
    (folder / "a.png").write_bytes(b"a")
    (folder / "b.png").write_bytes(b"b")
    first, second = checked(folder, "a.png"), checked(folder, "b.png")
    (folder / "a.png").unlink()
    os.mkfifo(folder / "a.png")  # no writer: a blocking open would never return
    (folder / "b.png").unlink()
    (folder / "b.png").symlink_to("/etc/passwd")
    with pytest.raises(FileSkippedError, match="replaced by a FIFO"):
        open_checked(first)
    with pytest.raises(FileSkippedError, match="replaced by a symlink"):
        open_checked(second)


def test_a_file_replaced_by_another_after_its_check_counts_as_gone(folder: Path) -> None:
    (folder / "a.png").write_bytes(b"first")
    before = checked(folder, "a.png")
    (folder / "new.png").write_bytes(b"second")
    os.replace(folder / "new.png", folder / "a.png")
    with pytest.raises(FileNotFoundError) as caught:
        open_checked(before)
    assert caught.value.errno == errno.ENOENT


def test_a_file_that_grew_past_the_limit_after_its_check_is_refused_once_the_limit_is_read(folder: Path) -> None:
    path = folder / "growing.png"
    path.write_bytes(b"x" * 10)
    small = checked(folder, "growing.png")
    with path.open("ab") as more:
        more.write(b"x" * (2 * LIMIT))
    with open_checked(small) as handle, pytest.raises(FileSkippedError, match=f"grew over the limit of {LIMIT} bytes") as caught:
        read_at_most(handle, small, LIMIT)
    assert caught.value.reason == "size"
