import cv2
import numpy as np
import pytest

from model.errors import InvalidImageError
from model.images import MAX_PIXELS, decode_image


def encode(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    "array",
    [
        np.full((20, 30), 200, np.uint8),  # grayscale
        np.full((20, 30, 4), 200, np.uint8),  # BGRA
        np.full((20, 30), 200 * 257, np.uint16),  # 16-bit grayscale
        np.full((20, 30, 3), 200 * 257, np.uint16),  # 16-bit colour
    ],
    ids=["gray", "rgba", "gray16", "bgr16"],
)
def test_odd_formats_become_8_bit_rgb(array):
    rgb = decode_image(encode(array))
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == 200)


def test_colour_order_is_rgb():
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    rgb = decode_image(encode(bgr))
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_bad_bytes_raise_a_clear_error():
    good = encode(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", "cam1/frame.png")
    with pytest.raises(InvalidImageError, match="frame.png: not a decodable image"):
        decode_image(b"this is not an image", "frame.png")
    with pytest.raises(InvalidImageError, match="not a decodable image"):
        decode_image(good[: len(good) // 3], "truncated.png")


def test_oversized_png_is_refused_from_its_header():
    header = bytearray(encode(np.zeros((2, 2), np.uint8)))
    header[16:20] = (20_000).to_bytes(4, "big")
    header[20:24] = (20_000).to_bytes(4, "big")
    assert 20_000 * 20_000 > MAX_PIXELS
    with pytest.raises(InvalidImageError, match="exceeds"):
        decode_image(bytes(header), "huge.png")
