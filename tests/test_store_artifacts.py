"""The filesystem artifact store: round trips, atomic writes, key checks and storage URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import ArtifactError, ArtifactNotFoundError, FileArtifactStore, open_artifact_store


def test_bytes_round_trip_under_nested_keys(tmp_path: Path) -> None:
    artifacts = open_artifact_store(str(tmp_path / "artifacts"))
    key = "line-1/cam-0/2025-03-03/f-1.heatmap.png"
    assert not artifacts.exists(key)
    assert artifacts.put(key, b"\x89PNG first") == key
    artifacts.put(key, b"\x89PNG second")
    assert artifacts.get(key) == b"\x89PNG second"
    assert artifacts.exists(key)
    stored = tmp_path / "artifacts" / "line-1" / "cam-0" / "2025-03-03" / "f-1.heatmap.png"
    assert artifacts.url_for(key) == stored.as_uri()
    assert [p.name for p in stored.parent.iterdir()] == ["f-1.heatmap.png"]  # no temporary file left


@pytest.mark.parametrize(
    "key",
    ["", "../escape.png", "a/../../escape.png", "/etc/passwd", "a//b.png", "a/./b.png", "a\\b.png", ".hidden", "a/"],
)
def test_unsafe_keys_are_refused_before_touching_the_disk(tmp_path: Path, key: str) -> None:
    artifacts = FileArtifactStore(tmp_path / "root")
    with pytest.raises(ArtifactError, match="artifact key"):
        artifacts.put(key, b"x")
    with pytest.raises(ArtifactError, match="artifact key"):
        artifacts.get(key)
    assert not (tmp_path / "root").exists()
    assert not (tmp_path / "escape.png").exists()


def test_a_missing_artifact_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match=r"no artifact 'a/b\.png'"):
        FileArtifactStore(tmp_path).get("a/b.png")


def test_file_urls_and_plain_paths_open_the_same_folder(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    open_artifact_store(folder.as_uri()).put("k.bin", b"1")
    assert open_artifact_store(str(folder)).get("k.bin") == b"1"


@pytest.mark.parametrize(
    ("url", "message"),
    [("s3://bucket/prefix", "unsupported scheme 's3'"), ("file://otherhost/data", "only local files")],
)
def test_unsupported_storage_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        open_artifact_store(url)


def test_the_default_store_is_under_lineguard_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    artifacts = open_artifact_store(None)
    assert isinstance(artifacts, FileArtifactStore)
    assert artifacts.root == tmp_path / "lineguard-data" / "artifacts"
