"""The device path on the CPU: device choice and its errors, frames decoded and fitted by the
device code, and a GPU's results against the CPU's where a GPU exists."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hostile_fixtures import jpeg_bomb

from model.device_images import batch_on_device, decode_on_device, resize_on_device
from model.devices import resolve_device, resolve_precision
from model.errors import InvalidImageError
from model.geometry import IMAGENET_STD, fit_image, to_network_input
from model.images import decode_image
from model.synthetic import good_part

CPU = torch.device("cpu")


def encoded(image: np.ndarray, suffix: str) -> bytes:
    return cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return cv2.resize(good_part(96, np.random.default_rng(0)), (128, 96))


def test_device_choice_says_what_is_wrong():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available on this machine"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("auto", CPU) in ("fp32", "bf16")


def test_frames_decoded_by_the_device_code_match_the_host_decoder_and_bad_ones_stay_apart(frame):
    jpeg, png = encoded(frame, ".jpg"), encoded(frame, ".png")
    results = decode_on_device([jpeg, b"", png, jpeg[: len(jpeg) // 3], jpeg_bomb()], ["a", "b", "c", "d", "e"], CPU)
    assert torch.equal(results[0].permute(1, 2, 0), torch.from_numpy(decode_image(jpeg)))
    assert torch.equal(results[2].permute(1, 2, 0), torch.from_numpy(frame))
    assert isinstance(results[1], InvalidImageError) and "b: empty file" in str(results[1])
    assert isinstance(results[3], InvalidImageError) and str(results[3]).startswith("d: ")
    assert isinstance(results[4], InvalidImageError) and "exceeds" in str(results[4])


def test_fitting_on_the_device_places_frames_like_the_host(frame):
    tall = np.ascontiguousarray(frame.transpose(1, 0, 2))
    images = [torch.from_numpy(image).permute(2, 0, 1) for image in (frame, tall)]
    batch, contents = batch_on_device(images, 64, 64)
    host = [fit_image(image, 64, 64) for image in (frame, tall)]
    assert contents == [(h.content_height, h.content_width) for h in host]
    reference = to_network_input([h.pixels for h in host])
    assert batch.shape == reference.shape == (2, 3, 64, 64)
    # The same scaling and filling as OpenCV's: at most one grey level apart (1/255 / std after normalising).
    assert float((batch - reference).abs().max()) <= 1.01 / 255 / min(IMAGENET_STD)


@pytest.mark.parametrize(
    "source, target",
    [((480, 640), (192, 256)), ((1024, 1024), (256, 256)), ((481, 643), (191, 255)), ((512, 512), (256, 256)), ((3000, 20), (256, 2)), ((60, 80), (192, 256))],
)
def test_scaling_on_the_device_is_opencvs(source, target):
    """Area averaging as two matrices is OpenCV's INTER_AREA, not an approximation of it (an
    antialiased bilinear filter differed by up to 13 grey levels); growing is its INTER_LINEAR."""
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (*source, 3), dtype=np.uint8), (5, 5), 2)
    shrinking = target[0] < source[0]
    host = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    device = resize_on_device(torch.from_numpy(image).permute(2, 0, 1), *target).permute(1, 2, 0).numpy()
    difference = np.abs(device.astype(int) - host.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decodes_and_normalises_like_the_cpu(frame):
    jpeg = encoded(frame, ".jpg")
    on_gpu = decode_on_device([jpeg], ["a"], torch.device("cuda"))[0]
    assert (on_gpu.cpu().int() - torch.from_numpy(decode_image(jpeg)).permute(2, 0, 1).int()).abs().max() <= 2
    pixels = [fit_image(frame, 64, 64).pixels]
    assert torch.allclose(to_network_input(pixels, torch.device("cuda")).cpu(), to_network_input(pixels), atol=1e-6)
