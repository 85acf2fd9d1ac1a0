"""Frames decoded and fitted on the scoring device, so that a GPU is not bound by the host's decoding.

A GPU scores a few thousand 256x256 frames/s; one CPU core decodes about 350 640x480 JPEGs/s and
fits fewer (bench/capacity.py). Here JPEG bytes go to the device as they are
(`torchvision.io.decode_jpeg(..., device="cuda")`, nvJPEG) and are scaled into the network's input
there; other formats are decoded on the host (model.images) and uploaded. Every frame's header is
checked on the host first, with the same limits as `model.images.decode_image`, so a decompression
bomb is refused before any decoder sees it. On the CPU the same functions run with device "cpu",
which is how the tests cover them.

Scaling reproduces the host's OpenCV: shrinking is area averaging (`cv2.INTER_AREA`), written as
two small matrices of each output pixel's share of every source pixel (exact, not an
approximation: equal to OpenCV's to one grey level), growing is bilinear (`cv2.INTER_LINEAR`), the
filling is the same reflection. So the device path differs from the host's by the JPEG decoder
alone (nvJPEG against libjpeg-turbo), which the worker measures before trusting it
(worker.device_decoding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from model.errors import InvalidImageError
from model.geometry import fitted_size, normalise
from model.images import checked_header, decode_image


def decode_on_device(blobs: list[bytes], names: list[str], device: torch.device) -> list[torch.Tensor | InvalidImageError]:
    """Encoded frames -> (3,H,W) uint8 RGB tensors on `device`, or the InvalidImageError of each
    frame that cannot be one (in place, so one bad frame costs only itself)."""
    results: list[torch.Tensor | InvalidImageError] = [InvalidImageError("not decoded")] * len(blobs)
    jpegs: list[int] = []
    for index, (blob, name) in enumerate(zip(blobs, names)):
        try:
            header = checked_header(blob, name)
            if header.format == "JPEG":
                jpegs.append(index)
            else:
                results[index] = torch.from_numpy(decode_image(blob, name)).permute(2, 0, 1).to(device)
        except InvalidImageError as error:
            results[index] = error
    if jpegs:
        encoded = [torch.frombuffer(bytearray(blobs[index]), dtype=torch.uint8) for index in jpegs]
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            # One corrupt JPEG fails the whole batched call: decode them one by one to tell which.
            decoded = [_decode_one_jpeg(data, names[index], device) for data, index in zip(encoded, jpegs)]
        for index, image in zip(jpegs, decoded):
            results[index] = image
    return results


def _decode_one_jpeg(data: torch.Tensor, name: str, device: torch.device) -> torch.Tensor | InvalidImageError:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as error:
        return InvalidImageError(f"{name}: not a decodable JPEG ({error})")


def area_weights(source: int, target: int, device: torch.device) -> torch.Tensor:
    """(target, source) float32: each target pixel's share of every source pixel when `source`
    pixels are averaged into `target` (OpenCV's INTER_AREA along one axis); rows sum to one."""
    scale = source / target
    starts = torch.arange(target, device=device, dtype=torch.float64).unsqueeze(1) * scale
    pixels = torch.arange(source, device=device, dtype=torch.float64).unsqueeze(0)
    overlap = (torch.minimum(starts + scale, pixels + 1) - torch.maximum(starts, pixels)).clamp_(min=0)
    return (overlap / scale).float()


def resize_on_device(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3,H,W) uint8 -> (3,height,width) uint8 on its device, as `cv2.resize` scales it on the host
    in `model.geometry.fit_image` and the worker: area averaging when it shrinks, bilinear when not."""
    source_height, source_width = image.shape[1:]
    if height < source_height:
        rows, columns = area_weights(source_height, height, image.device), area_weights(source_width, width, image.device)
        resized = torch.einsum("yh,chw,xw->cyx", rows, image.float(), columns)
    else:
        resized = F.interpolate(image.unsqueeze(0).float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def fit_on_device(image: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """(3,H,W) uint8 on any device -> ((3,height,width) uint8 there, content height, content width):
    what `model.geometry.fit_image` does on the host (aspect ratio kept, the rest filled by
    reflection), with the same scaling (`resize_on_device`)."""
    content_height, content_width = fitted_size(*image.shape[1:], height, width)
    resized = resize_on_device(image, content_height, content_width).unsqueeze(0).float()
    pad_bottom, pad_right = height - content_height, width - content_width
    if pad_bottom or pad_right:
        mode = "reflect" if pad_bottom < content_height and pad_right < content_width else "replicate"
        resized = F.pad(resized, (0, pad_right, 0, pad_bottom), mode=mode)
    return resized.round_().clamp_(0, 255).to(torch.uint8)[0], content_height, content_width


def batch_on_device(images: list[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Decoded (3,H,W) uint8 frames on one device -> the network's normalised input batch there,
    and each frame's content height and width within it."""
    fitted = [fit_on_device(image, height, width) for image in images]
    return normalise(torch.stack([pixels for pixels, _, _ in fitted])), [(h, w) for _, h, w in fitted]
