"""Turning any input image (bytes or file) into 8-bit RGB.

Grayscale, RGBA, palette and 16-bit images are converted; anything else that cannot become an
RGB picture raises `InvalidImageError` with the reason, so callers can record it and go on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.errors import InvalidImageError
from model.image_headers import ImageHeader, read_header

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Larger frames are refused rather than decoded: 64 MP is beyond any line camera we target
# and a decompression bomb must not take a worker's memory.
MAX_PIXELS = 64_000_000
# Frames whose shorter side is smaller are refused: the default recipe's coarsest tapped stage
# (relu4_3) has a stride of 8, so below 32 px a frame gives it fewer than 4x4 positions of real
# content (model.geometry.MIN_STRIDES_PER_SIDE) however far it is scaled up. Such a frame is a
# wrong file or a broken camera, not a part to call good.
MIN_SIDE = 32


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> (H,W,3) uint8 RGB. Raises InvalidImageError naming `name`.

    The size is checked from the header (see model.image_headers) before anything is decoded.
    """
    checked_header(data, name)
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise InvalidImageError(f"{name}: not a decodable image (corrupt, truncated or unknown format)")
    return to_rgb8(decoded, name)


def checked_header(data: bytes, name: str = "image") -> ImageHeader:
    """The header of encoded image bytes, refused when empty, of an unaccepted format or size."""
    if not data:
        raise InvalidImageError(f"{name}: empty file")
    header = read_header(data, name)
    check_size(header, name)
    return header


def check_size(header: ImageHeader, name: str = "image") -> None:
    """Refuse an image over MAX_PIXELS (or with TIFF tiles over it) or with a side under MIN_SIDE."""
    size = f"{header.width}x{header.height}"
    if header.width * header.height > MAX_PIXELS:
        raise InvalidImageError(f"{name}: {header.format} of {size} exceeds {MAX_PIXELS} pixels")
    if header.tile is not None and header.tile[0] * header.tile[1] > MAX_PIXELS:
        raise InvalidImageError(f"{name}: TIFF tiles of {header.tile[0]}x{header.tile[1]} exceed {MAX_PIXELS} pixels")
    if min(header.width, header.height) < MIN_SIDE:
        raise InvalidImageError(f"{name}: {header.format} of {size} is smaller than {MIN_SIDE} px on its shorter side")


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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidImageError(f"{path}: cannot read ({error.strerror})") from error


def read_image(path: str | Path) -> np.ndarray:
    """A file -> (H,W,3) uint8 RGB. Raises InvalidImageError naming the file."""
    return decode_image(_read_bytes(Path(path)), str(path))


def read_image_shape(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding it; the same checks
    as `read_image` (accepted format, size limits), so an image it passes will decode."""
    header = checked_header(_read_bytes(Path(path)), str(path))
    return header.height, header.width


def read_mask(path: str | Path) -> np.ndarray:
    """A ground-truth mask file -> (H,W) bool, true on defect pixels."""
    decoded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise InvalidImageError(f"{path}: not a readable mask image")
    return decoded > 127


def list_images(directory: Path) -> list[Path]:
    """Image files directly in `directory`, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
