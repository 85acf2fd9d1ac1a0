"""Turning any input image (bytes or file) into 8-bit RGB.

Grayscale, RGBA, palette and 16-bit images are converted; anything else that cannot become an
RGB picture raises `InvalidImageError` with the reason, so callers can record it and go on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.errors import InvalidImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Larger frames are refused rather than decoded: 64 MP is beyond any line camera we target
# and a decompression bomb must not take a worker's memory.
MAX_PIXELS = 64_000_000


def _image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header, read before decoding so a bomb is refused cheaply."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> (H,W,3) uint8 RGB. Raises InvalidImageError naming `name`."""
    if not data:
        raise InvalidImageError(f"{name}: empty file")
    header_size = _image_size_from_header(data)
    if header_size and header_size[0] * header_size[1] > MAX_PIXELS:
        raise InvalidImageError(f"{name}: {header_size[0]}x{header_size[1]} exceeds {MAX_PIXELS} pixels")
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise InvalidImageError(f"{name}: not a decodable image (corrupt, truncated or unknown format)")
    return to_rgb8(decoded, name)


def to_rgb8(decoded: np.ndarray, name: str = "image") -> np.ndarray:
    """OpenCV's decoded array (gray, BGR, BGRA; 8 or 16 bit; or float) -> (H,W,3) uint8 RGB."""
    if decoded.size == 0 or decoded.ndim not in (2, 3):
        raise InvalidImageError(f"{name}: unusable image shape {decoded.shape}")
    if decoded.shape[0] * decoded.shape[1] > MAX_PIXELS:
        raise InvalidImageError(f"{name}: {decoded.shape[1]}x{decoded.shape[0]} exceeds {MAX_PIXELS} pixels")
    if decoded.dtype == np.uint16:
        decoded = (decoded // 257).astype(np.uint8)
    elif decoded.dtype in (np.float32, np.float64):
        decoded = np.clip(decoded * 255.0, 0, 255).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise InvalidImageError(f"{name}: unsupported pixel depth {decoded.dtype}")
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    raise InvalidImageError(f"{name}: unsupported channel count {decoded.shape[2]}")


def read_image(path: str | Path) -> np.ndarray:
    """A file -> (H,W,3) uint8 RGB. Raises InvalidImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidImageError(f"{path}: cannot read ({error.strerror})") from error
    return decode_image(data, str(path))


def read_mask(path: str | Path) -> np.ndarray:
    """A ground-truth mask file -> (H,W) bool, true on defect pixels."""
    decoded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise InvalidImageError(f"{path}: not a readable mask image")
    return decoded > 127


def list_images(directory: Path) -> list[Path]:
    """Image files directly in `directory`, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
