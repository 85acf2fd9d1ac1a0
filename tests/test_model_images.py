import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_fixtures import BOMB_BUDGET_BYTES, decode_costs, jpeg_bomb, with_jpeg_size
from PIL import Image

from model.errors import InvalidImageError
from model.image_headers import ACCEPTED_FORMATS, read_header
from model.images import IMAGE_SUFFIXES, MAX_PIXELS, MIN_SIDE, check_size, decode_image



def encode(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    "array",
    [
        np.full((40, 60), 200, np.uint8),  # grayscale
        np.full((40, 60, 4), 200, np.uint8),  # BGRA
        np.full((40, 60), 200 * 257, np.uint16),  # 16-bit grayscale
        np.full((40, 60, 3), 200 * 257, np.uint16),  # 16-bit colour
    ],
    ids=["gray", "rgba", "gray16", "bgr16"],
)
def test_odd_formats_become_8_bit_rgb(array):
    rgb = decode_image(encode(array))
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == 200)


def test_colour_order_is_rgb():
    bgr = np.zeros((32, 32, 3), np.uint8)
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


# --- sizes from the header, before decoding ---


def tiff(width: int, height: int, order: str = "<", big: bool = False, tile: tuple[int, int] | None = None) -> bytes:
    """An uncompressed 8-bit gray TIFF (classic or BigTIFF, either byte order), written field by field."""
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(height) for x in range(width)) if tile is None else b""
    long = 16 if big else 4  # LONG8 fills a BigTIFF value field, LONG a classic one
    entries = [(256, long, width), (257, long, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (277, 3, 1)]
    if tile is None:
        entries += [(273, long, 0), (278, long, height), (279, long, len(pixels))]  # strip offset filled in below
    else:
        entries += [(322, long, tile[0]), (323, long, tile[1])]
    mark = b"II" if order == "<" else b"MM"
    if big:
        header_size, entry_format, count_format, tail = 16, "HHQQ", "Q", "Q"
        header = mark + struct.pack(order + "HHHQ", 43, 8, 0, header_size)
    else:
        header_size, entry_format, count_format, tail = 8, "HHII", "H", "I"
        header = mark + struct.pack(order + "HI", 42, header_size)
    directory_size = struct.calcsize(order + count_format) + len(entries) * struct.calcsize(order + entry_format) + struct.calcsize(order + tail)
    pixel_offset = header_size + directory_size
    directory = struct.pack(order + count_format, len(entries))
    for tag, kind, value in entries:
        value = pixel_offset if tag == 273 else value
        if kind == 3:  # a SHORT sits left-justified in the value field
            field = struct.pack(order + "H", value).ljust(8 if big else 4, b"\0")
            directory += struct.pack(order + entry_format[:3], tag, kind, 1) + field
        else:
            directory += struct.pack(order + entry_format, tag, kind, 1, value)
    directory += struct.pack(order + tail, 0)  # no next directory
    return header + directory + pixels


def pil_encoded(image: np.ndarray, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format_name, **options)
    return buffer.getvalue()


def samples(height: int, width: int) -> dict[str, bytes]:
    """One encoding of a ``width`` x ``height`` image per variant of every accepted format."""
    rng = np.random.default_rng(height * width)
    colour = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    gray = colour[..., 0].copy()
    return {
        "png": encode(colour),
        "png-rgba": encode(alpha),
        "png-gray16": encode(gray.astype(np.uint16) * 257),
        "jpeg": encode(colour, ".jpg"),
        "jpeg-gray": encode(gray, ".jpg"),
        "jpeg-progressive": cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "tiff": encode(colour, ".tif"),
        "tiff-big-endian": tiff(width, height, ">"),
        "bigtiff": tiff(width, height, "<", big=True),
        "bigtiff-big-endian": tiff(width, height, ">", big=True),
        "bmp": encode(colour, ".bmp"),
        "bmp-gray": encode(gray, ".bmp"),
        "bmp-rgba": encode(alpha, ".bmp"),
        "webp-lossy": cv2.imencode(".webp", colour, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes(),
        "webp-lossless": cv2.imencode(".webp", colour, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),
        "webp-extended": pil_encoded(alpha, "WEBP", quality=80),  # VP8X + ALPH + VP8
    }


@pytest.mark.parametrize("height, width", [(32, 32), (37, 53), (480, 641), (1000, 40)])
def test_the_header_gives_the_size_the_decoder_decodes_in_every_accepted_format(height: int, width: int) -> None:
    for variant, data in samples(height, width).items():
        header = read_header(data, variant)
        assert (header.width, header.height) == (width, height), variant
        assert header.format in ACCEPTED_FORMATS
        assert decode_image(data, variant).shape == (height, width, 3), variant


def test_the_accepted_formats_are_those_of_the_image_suffixes() -> None:
    by_suffix = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WebP"}
    assert set(IMAGE_SUFFIXES) == set(by_suffix) and set(by_suffix.values()) == set(ACCEPTED_FORMATS)


def oversized(variant: str) -> bytes:
    """An image of ``variant`` whose header says it is far over MAX_PIXELS (the pixel data stays small)."""
    small = samples(40, 40)
    if variant == "png":
        return small["png"][:16] + struct.pack(">II", 20_000, 20_000) + small["png"][24:]
    if variant == "jpeg":
        return with_jpeg_size(small["jpeg"], 20_000, 20_000)
    if variant == "tiff":
        return tiff(20_000, 20_000, tile=(256, 256))
    if variant == "tiff-tiles":
        return tiff(1000, 1000, tile=(10_000, 10_000))
    if variant == "bigtiff":
        return tiff(100_000, 100_000, ">", big=True, tile=(256, 256))
    if variant == "bmp":
        return small["bmp"][:18] + struct.pack("<ii", 20_000, -20_000) + small["bmp"][26:]
    if variant == "webp-lossy":  # VP8: 14-bit width and height at bytes 26-29
        return small["webp-lossy"][:26] + struct.pack("<HH", 16_383, 16_383) + small["webp-lossy"][30:]
    if variant == "webp-lossless":  # VP8L: 14 bits each of width - 1 and height - 1 after the 0x2F signature
        return small["webp-lossless"][:21] + struct.pack("<I", 16_383 | 16_383 << 14) + small["webp-lossless"][25:]
    if variant == "webp-extended":  # VP8X: 24-bit canvas width - 1 and height - 1
        data = small["webp-extended"]
        return data[:24] + (16_383).to_bytes(3, "little") * 2 + data[30:]
    raise ValueError(variant)


OVERSIZED_VARIANTS = ("png", "jpeg", "tiff", "tiff-tiles", "bigtiff", "bmp", "webp-lossy", "webp-lossless", "webp-extended")


@pytest.mark.parametrize("variant", OVERSIZED_VARIANTS)
def test_an_image_over_the_pixel_limit_is_refused_from_its_header_in_every_format(variant: str) -> None:
    # Header only: decoding happens in the memory-capped test below, as a regression could decode gigabytes.
    name = f"bomb.{variant.split('-')[0]}"
    with pytest.raises(InvalidImageError, match=rf"^{name.replace('.', '[.]')}: .* exceeds? {MAX_PIXELS} pixels"):
        check_size(read_header(oversized(variant), name), name)


@pytest.mark.parametrize("height, width", [(1, 1), (MIN_SIDE - 1, 500), (500, MIN_SIDE - 1)])
def test_an_image_below_the_minimum_side_is_refused_in_every_format(height: int, width: int) -> None:
    for variant, data in samples(height, width).items():
        with pytest.raises(InvalidImageError, match=f"{variant}: .* is smaller than {MIN_SIDE} px on its shorter side"):
            decode_image(data, variant)


def test_formats_the_decoder_knows_but_we_do_not_accept_are_refused_before_decoding() -> None:
    colour = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    others = {
        "gif": pil_encoded(colour, "GIF"),
        "ppm": encode(colour, ".ppm"),  # OpenCV decodes these; the line does not take them
        "sunraster": encode(colour, ".ras"),
        "hdr": encode(colour.astype(np.float32) / 255, ".hdr"),
    }
    for name, data in others.items():
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None or name == "gif"
        with pytest.raises(InvalidImageError, match=f"{name}: not a decodable image \\(not one of the accepted formats"):
            decode_image(data, name)


#: Largest scrambled image decoded here, whatever the checks under test say (this process has no memory cap).
SCRAMBLED_DECODE_PIXELS = 4_000_000


def test_a_truncated_or_scrambled_header_is_an_invalid_image_never_a_crash() -> None:
    rng = np.random.default_rng(2)
    for variant, data in samples(40, 48).items():
        for length in range(1, 64):
            try:
                decode_image(data[:length], variant)
            except InvalidImageError:
                pass
        for _ in range(40):  # a few bytes of the header changed at random
            scrambled = bytearray(data)
            for position in rng.integers(0, min(len(data), 64), size=3):
                scrambled[position] = int(rng.integers(0, 256))
            try:
                header = read_header(bytes(scrambled), variant)
                if header.width * header.height > SCRAMBLED_DECODE_PIXELS:
                    continue  # refused or not, too large to decode in this process
                image = decode_image(bytes(scrambled), variant)
            except InvalidImageError:
                continue
            assert image.shape[:2] == (header.height, header.width), variant  # what decodes is the size checked


def test_a_bomb_costs_the_decoding_process_under_100_mb_in_every_format(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb-20000x20000.jpg"
    bomb.write_bytes(jpeg_bomb())
    assert bomb.stat().st_size > 5 * 2**20
    files = [bomb]
    for variant in OVERSIZED_VARIANTS:
        files.append(tmp_path / f"oversized-{variant}")
        files[-1].write_bytes(oversized(variant))
    # Control: within the pixel limit but 108 MB once decoded, so the cap must stop its decoding.
    control = tmp_path / "control-6000x6000.jpg"
    control.write_bytes(with_jpeg_size(samples(40, 40)["jpeg"], 6000, 6000))
    results = decode_costs([*files, control], BOMB_BUDGET_BYTES)
    for path in files:
        result = results[str(path)]
        assert result["outcome"].startswith("InvalidImageError") and "exceed" in result["outcome"], result
        assert result["growth_bytes"] < BOMB_BUDGET_BYTES, (path.name, result)
    assert "Insufficient memory" in results[str(control)]["outcome"], results[str(control)]
