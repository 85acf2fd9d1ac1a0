"""Width and height of an encoded image, read from its header before any pixel is decoded.

One small reader per format the decoders accept (PNG, JPEG, TIFF, BMP, WebP); bytes of any other
format are refused. `model.images.decode_image` checks the size against its limits first, so a
decompression bomb (a few MB that decode to gigabytes) costs a few header bytes, not the decode.
Each reader looks at the same header the decoder (OpenCV) sizes its buffers from: PNG's IHDR, the
first JPEG frame header, the first TIFF directory, BMP's info header, WebP's first chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from model.errors import InvalidImageError

#: The formats accepted, as named in messages.
ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WebP")


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says about its size."""

    format: str
    width: int
    height: int
    #: (width, height) of a TIFF's tiles, which the decoder allocates one at a time; None otherwise.
    tile: tuple[int, int] | None = None


class _HeaderError(Exception):
    """A header that cannot be read; the message says where and why."""


def read_header(data: bytes, name: str = "image") -> ImageHeader:
    """The format and size of the encoded image ``data``, from its header alone.

    Raises InvalidImageError naming ``name`` for any format but those accepted, and for a header
    that is truncated or inconsistent.
    """
    for signature_matches, reader in _READERS:
        if signature_matches(data):
            try:
                return reader(data)
            except (_HeaderError, struct.error, OverflowError) as error:
                # struct.error, OverflowError: a field or an offset runs past the end of the data.
                reason = str(error) if isinstance(error, _HeaderError) else "its header is truncated"
                raise InvalidImageError(f"{name}: not a decodable image ({reason})") from error
    raise InvalidImageError(f"{name}: not a decodable image (not one of the accepted formats: {', '.join(ACCEPTED_FORMATS)})")


def _png(data: bytes) -> ImageHeader:
    # Signature (8), then the IHDR chunk: length (4), type (4), width (4), height (4), ...
    if data[12:16] != b"IHDR":
        raise _HeaderError("PNG whose first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return ImageHeader("PNG", width, height)


#: JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC, which share the range).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length field: TEM, RST0-7 (SOI is the signature).
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg(data: bytes) -> ImageHeader:
    # Segments follow the SOI marker: 0xFF, marker byte, 2-byte length (counting itself), payload.
    # The frame header (SOFn: precision, height, width) comes before the first scan (SOS).
    position = 2
    while True:
        if position >= len(data):
            raise _HeaderError("JPEG that ends before its frame header")
        if data[position] != 0xFF:
            raise _HeaderError(f"JPEG without a marker at byte {position}")
        while position < len(data) and data[position] == 0xFF:  # fill bytes may pad a marker
            position += 1
        if position >= len(data):
            raise _HeaderError("JPEG that ends before its frame header")
        marker = data[position]
        position += 1
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise _HeaderError(f"JPEG with marker 0x{marker:02X} before its frame header")
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2:
            raise _HeaderError(f"JPEG segment at byte {position} with length {length}")
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack_from(">HH", data, position + 3)
            return ImageHeader("JPEG", width, height)
        position += length


#: TIFF field types that hold a whole number, and their sizes in bytes (SHORT, LONG, LONG8).
_TIFF_INTEGER_TYPES = {3: 2, 4: 4, 16: 8}
_TIFF_IMAGE_WIDTH, _TIFF_IMAGE_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 256, 257, 322, 323
#: Most entries in a directory libtiff reads (it refuses longer ones as corrupt).
_TIFF_MAX_ENTRIES = 4096


def _tiff(data: bytes) -> ImageHeader:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 42:  # classic TIFF: 4-byte offsets, 12-byte entries
        (directory,) = struct.unpack_from(order + "I", data, 4)
        (entries,) = struct.unpack_from(order + "H", data, directory)
        first_entry, entry_size, count_format = directory + 2, 12, "I"
    else:  # BigTIFF (43): 8-byte offsets, 20-byte entries
        (directory,) = struct.unpack_from(order + "Q", data, 8)
        (entries,) = struct.unpack_from(order + "Q", data, directory)
        first_entry, entry_size, count_format = directory + 8, 20, "Q"
    if entries > _TIFF_MAX_ENTRIES:
        raise _HeaderError(f"TIFF directory with {entries} entries")
    fields: dict[int, int] = {}
    for index in range(entries):
        entry = first_entry + index * entry_size
        tag, kind, count = struct.unpack_from(order + "HH" + count_format, data, entry)
        if tag in (_TIFF_IMAGE_WIDTH, _TIFF_IMAGE_LENGTH, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH):
            if kind not in _TIFF_INTEGER_TYPES or count != 1:
                raise _HeaderError(f"TIFF whose tag {tag} is not one whole number")
            value_format = {2: "H", 4: "I", 8: "Q"}[_TIFF_INTEGER_TYPES[kind]]
            (value,) = struct.unpack_from(order + value_format, data, entry + 4 + struct.calcsize(count_format))
            # Which of two differing copies a decoder would use is not ours to guess.
            if fields.setdefault(tag, value) != value:
                raise _HeaderError(f"TIFF with two different values of tag {tag}")
    if _TIFF_IMAGE_WIDTH not in fields or _TIFF_IMAGE_LENGTH not in fields:
        raise _HeaderError("TIFF whose first directory has no ImageWidth or ImageLength")
    tile = None
    if _TIFF_TILE_WIDTH in fields or _TIFF_TILE_LENGTH in fields:
        tile = (fields.get(_TIFF_TILE_WIDTH, 0), fields.get(_TIFF_TILE_LENGTH, 0))
    return ImageHeader("TIFF", fields[_TIFF_IMAGE_WIDTH], fields[_TIFF_IMAGE_LENGTH], tile)


def _bmp(data: bytes) -> ImageHeader:
    # File header (14 bytes), then the info header, whose size tells its kind.
    (info_size,) = struct.unpack_from("<I", data, 14)
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit width and height
        width, height = struct.unpack_from("<HH", data, 18)
    elif info_size >= 40:  # BITMAPINFOHEADER and its successors: signed 32-bit; height < 0 is top-down
        width, height = struct.unpack_from("<ii", data, 18)
        height = abs(height)
    else:
        raise _HeaderError(f"BMP with an info header of {info_size} bytes")
    return ImageHeader("BMP", width, height)


def _webp(data: bytes) -> ImageHeader:
    # RIFF container: "RIFF", size, "WEBP", then the first chunk: fourcc (4), size (4), payload.
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas width - 1 and height - 1 after 4 bytes of flags
        if len(data) < 30:
            raise _HeaderError("WebP whose VP8X chunk is truncated")
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("WebP", width, height)
    if chunk == b"VP8L":  # lossless: signature 0x2F, then 14 bits of width - 1 and of height - 1
        if data[20:21] != b"\x2f":
            raise _HeaderError("WebP whose VP8L chunk lacks its signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return ImageHeader("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code, then 14-bit width and height
        if data[23:26] != b"\x9d\x01\x2a":
            raise _HeaderError("WebP whose VP8 chunk lacks its start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return ImageHeader("WebP", width & 0x3FFF, height & 0x3FFF)
    raise _HeaderError(f"WebP whose first chunk is {chunk!r}")


_READERS: tuple[tuple[Callable[[bytes], bool], Callable[[bytes], ImageHeader]], ...] = (
    (lambda data: data[:8] == b"\x89PNG\r\n\x1a\n", _png),
    (lambda data: data[:3] == b"\xff\xd8\xff", _jpeg),
    (lambda data: data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda data: data[:2] == b"BM", _bmp),
    (lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP", _webp),
)
