"""How an image of any shape becomes the network's input, and how a map goes back to the image.

A model has one input shape, chosen at training time from the training images: about
`image_size`² pixels in their (median) aspect ratio, each side a multiple of the network's stride.
So a square part is seen at image_size x image_size, a 2000x500 strip at 512x128, both at the same
cost, and a batch of frames from one camera is one tensor. An image of another aspect ratio is
scaled to fit inside the input and the rest is filled by reflection; that filling is cut off the
map again, so it never counts in a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

import cv2
import numpy as np
import torch

# The ImageNet teacher's input normalisation: its weights fix it, so it is not a recipe choice.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Short sides below this many strides leave too few positions at the deepest tap to compare.
MIN_STRIDES_PER_SIDE = 4


@dataclass(frozen=True)
class FittedImage:
    """An image scaled into the input: `pixels` is (height, width, 3) uint8 at the input shape;
    the image itself occupies its top-left `content_height` x `content_width` pixels."""

    pixels: np.ndarray
    content_height: int
    content_width: int


def input_shape_for(image_shapes: list[tuple[int, int]], image_size: int, stride: int) -> tuple[int, int]:
    """(height, width) of the network input for images of `image_shapes` (height, width each):
    about image_size² pixels at their median aspect ratio, each side a multiple of `stride`."""
    if not image_shapes:
        raise ValueError("an input shape needs at least one image shape")
    aspect = median(width / height for height, width in image_shapes)
    height = image_size / math.sqrt(aspect)
    width = image_size * math.sqrt(aspect)
    smallest = MIN_STRIDES_PER_SIDE * stride

    def to_stride(side: float) -> int:
        return max(smallest, int(round(side / stride)) * stride)

    return to_stride(height), to_stride(width)


def fit_scale(source_height: int, source_width: int, height: int, width: int) -> float:
    """The factor that scales a source_height x source_width image to fit inside height x width,
    aspect ratio kept."""
    return min(height / source_height, width / source_width)


def fitted_size(source_height: int, source_width: int, height: int, width: int) -> tuple[int, int]:
    """(height, width) of such an image once fitted: its content in the input, on the host and on a
    device alike (`fit_image`, `model.device_images.fit_on_device`)."""
    scale = fit_scale(source_height, source_width, height, width)
    return min(height, max(1, int(round(source_height * scale)))), min(width, max(1, int(round(source_width * scale))))


def fit_scale_spread(image_shapes: list[tuple[int, int]], input_shape: tuple[int, int]) -> float:
    """How many times more the most enlarged of `image_shapes` is scaled than the least when each is
    fitted whole into `input_shape` (as `fit_image` does): 1.0 for images of one shape."""
    scales = [fit_scale(image_height, image_width, *input_shape) for image_height, image_width in image_shapes]
    return max(scales) / min(scales)


def fit_image(image: np.ndarray, height: int, width: int) -> FittedImage:
    """(H,W,3) uint8 -> the image scaled to fit inside height x width, aspect ratio kept,
    the remainder (right and bottom) filled by reflecting the image."""
    source_height, source_width = image.shape[:2]
    content_height, content_width = fitted_size(source_height, source_width, height, width)
    shrinking = content_height < source_height
    resized = cv2.resize(
        image, (content_width, content_height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    pad_bottom, pad_right = height - content_height, width - content_width
    if pad_bottom or pad_right:
        # BORDER_REFLECT_101 needs content wider than the pad; BORDER_REPLICATE covers slivers.
        border = cv2.BORDER_REFLECT_101 if pad_bottom < content_height and pad_right < content_width else cv2.BORDER_REPLICATE
        resized = cv2.copyMakeBorder(resized, 0, pad_bottom, 0, pad_right, border)
    return FittedImage(np.ascontiguousarray(resized), content_height, content_width)


def region_box(height: int, width: int, region: tuple[float, float, float, float] | None) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in pixels of `region` (fractions of the frame, as in the recipe)
    in a height x width image, at least one pixel each way; the whole image for None."""
    if region is None:
        return 0, 0, height, width
    top, left, bottom, right = region
    top_px, left_px = min(int(round(top * height)), height - 1), min(int(round(left * width)), width - 1)
    return top_px, left_px, max(top_px + 1, int(round(bottom * height))), max(left_px + 1, int(round(right * width)))


def in_region(image: np.ndarray, region: tuple[float, float, float, float] | None) -> np.ndarray:
    """(H,W,...) image -> its pixels inside `region` (a view; the image itself for None)."""
    if region is None:
        return image
    top, left, bottom, right = region_box(image.shape[0], image.shape[1], region)
    return image[top:bottom, left:right]


def to_network_input(pixels: list[np.ndarray], device: torch.device | None = None) -> torch.Tensor:
    """Equal-shape (h,w,3) uint8 RGB arrays -> (B,3,h,w) float32 on `device` (default the CPU),
    normalised for the teacher. A GPU gets the uint8 batch (a quarter of float32's bytes) from
    pinned memory, copied while the host goes on, and converts it itself."""
    batch = torch.from_numpy(np.stack(pixels))
    if device is not None and device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return normalise(batch.permute(0, 3, 1, 2))


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """(B,3,h,w) uint8 RGB on any device -> float32 there, normalised for the teacher."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float().div_(255.0) - mean) / std


def content_of(anomaly_map, fitted: FittedImage):
    """(h,w) map over the input (array or tensor) -> the part over the image's own pixels."""
    return anomaly_map[: fitted.content_height, : fitted.content_width]


def map_to_image(
    content_map: np.ndarray, image_height: int, image_width: int, region: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """(h,w) map over an image's own pixels (its region's, with a region) at the network's scale ->
    (image_height, image_width); 0 outside the region, where nothing is scored."""
    top, left, bottom, right = region_box(image_height, image_width, region)
    resized = cv2.resize(np.ascontiguousarray(content_map), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    if region is None:
        return resized
    full = np.zeros((image_height, image_width), dtype=resized.dtype)
    full[top:bottom, left:right] = resized
    return full
