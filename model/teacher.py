"""The frozen ImageNet VGG teacher and where its weights come from.

Weights are looked up in a fixed order (explicit path or ``random``, then the
``LINEGUARD_TEACHER_WEIGHTS`` variable, then torchvision's cache or download). A random
teacher is a different, much weaker method, so it is only used when asked for and is
recorded wherever the model goes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from model.errors import TeacherWeightsError

TEACHER_WEIGHTS_ENV = "LINEGUARD_TEACHER_WEIGHTS"
RANDOM_TEACHER = "random"

# Each backbone's feature layers in torchvision's order, so that its state dicts load: the output
# channels of a 3x3 convolution (each followed by a ReLU), or "M" for a 2x2 max pooling.
VGG_LAYERS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def _pools_and_taps(layers: tuple[int | str, ...]) -> tuple[tuple[int, ...], dict[str, int]]:
    """Index in `vgg*.features` of each pooling, and of the ReLU that ends each block before it, by
    its usual name (relu3_3: the third convolution's ReLU of the third block). A convolution and its
    ReLU are two modules."""
    index, convolutions, pools, taps = 0, 0, [], {}
    for layer in layers:
        if layer == "M":
            taps[f"relu{len(pools) + 1}_{convolutions}"] = index - 1
            pools.append(index)
            index, convolutions = index + 1, 0
        else:
            index, convolutions = index + 2, convolutions + 1
    return tuple(pools), taps


# Index in `vgg*.features` of each 2x2 max pooling, and of the ReLU that ends each tap, by backbone.
VGG_POOL_INDEX: dict[str, tuple[int, ...]] = {backbone: _pools_and_taps(layers)[0] for backbone, layers in VGG_LAYERS.items()}
VGG_TAP_INDEX: dict[str, dict[str, int]] = {backbone: _pools_and_taps(layers)[1] for backbone, layers in VGG_LAYERS.items()}

HOW_TO_PROVIDE_WEIGHTS = (
    "Provide ImageNet VGG weights with --teacher-weights PATH or the environment variable "
    f"{TEACHER_WEIGHTS_ENV}=PATH (a state dict of torchvision's `vgg16().features` or of the "
    "whole `vgg16()`), or run once with internet access so torchvision can download its own. "
    "`--teacher-weights random` trains against a random teacher, for tests only."
)


@dataclass(frozen=True)
class TeacherWeights:
    """Weights for `vgg.features` and a description of where they came from."""

    state_dict: dict[str, torch.Tensor]
    source: str

    @property
    def is_random(self) -> bool:
        return self.source.startswith(RANDOM_TEACHER)


def tap_indices(backbone: str, taps: list[str]) -> list[int]:
    """Feature indices of `taps` in `backbone`, validated and in network order."""
    if backbone not in VGG_TAP_INDEX:
        raise ValueError(f"backbone must be one of {sorted(VGG_TAP_INDEX)}, got {backbone!r}")
    known = VGG_TAP_INDEX[backbone]
    unknown = [tap for tap in taps if tap not in known]
    if unknown or not taps:
        raise ValueError(f"taps {unknown or taps} are not taps of {backbone}; choose from {list(known)}")
    indices = [known[tap] for tap in taps]
    if indices != sorted(set(indices)):
        raise ValueError(f"taps must be distinct and in network order, got {taps}")
    return indices


def tap_stride(backbone: str, taps: list[str]) -> int:
    """Input pixels per position of the deepest tap: input sides must be multiples of it."""
    deepest = tap_indices(backbone, taps)[-1]
    return 2 ** sum(1 for pool in VGG_POOL_INDEX[backbone] if pool < deepest)


def _vgg_features(backbone: str, initialise: bool = True) -> nn.Sequential:
    """torchvision's `backbone().features`, initialised as torchvision initialises the whole network,
    classifier included (a random teacher's weights, and the student's initial ones drawn after them,
    depend on it). With `initialise` False only the feature layers are built (each keeps PyTorch's
    per-layer default initialisation; torchvision's whole-network pass and its 120M-weight classifier
    are skipped), about a second less of CPU, for a network whose every weight is loaded next."""
    if initialise:
        return getattr(models, backbone)(weights=None).features
    modules: list[nn.Module] = []
    channels = 3
    for layer in VGG_LAYERS[backbone]:
        if layer == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, layer, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = layer
    return nn.Sequential(*modules)


def _features_state_from(state: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """Accept a `features` state dict or a whole-VGG one; keep only the features' entries."""
    if any(key.startswith("features.") for key in state):
        state = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise TeacherWeightsError(f"{origin} holds no VGG feature weights. {HOW_TO_PROVIDE_WEIGHTS}")
    return state


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise TeacherWeightsError(f"teacher weights file {path} does not exist. {HOW_TO_PROVIDE_WEIGHTS}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign files
        raise TeacherWeightsError(f"cannot read teacher weights {path}: {error}") from error
    if not isinstance(state, dict):
        raise TeacherWeightsError(f"{path} is not a state dict. {HOW_TO_PROVIDE_WEIGHTS}")
    return _features_state_from(state, str(path))


def _torchvision_weights(backbone: str) -> dict[str, torch.Tensor]:
    enum = {"vgg16": models.VGG16_Weights, "vgg19": models.VGG19_Weights}[backbone]
    try:
        state = enum.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as error:  # no cache and no network, most often
        raise TeacherWeightsError(
            f"no ImageNet weights for the {backbone} teacher: none given, {TEACHER_WEIGHTS_ENV} is not set "
            f"and torchvision could not load its own ({error}). {HOW_TO_PROVIDE_WEIGHTS}"
        ) from error
    return _features_state_from(state, f"torchvision {enum.IMAGENET1K_V1}")


def resolve_teacher_weights(backbone: str, spec: str | None, seed: int = 0) -> TeacherWeights:
    """Find the teacher's weights: `spec` (a path or "random"), else the env variable, else torchvision."""
    spec = spec or os.environ.get(TEACHER_WEIGHTS_ENV) or None
    if spec == RANDOM_TEACHER:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            state = _vgg_features(backbone).state_dict()
        return TeacherWeights(state, f"{RANDOM_TEACHER}:seed={seed}")
    if spec is not None:
        path = Path(spec).expanduser().resolve()
        return TeacherWeights(_load_weights_file(path), f"file:{path}")
    return TeacherWeights(_torchvision_weights(backbone), f"torchvision:{backbone}:IMAGENET1K_V1")


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of a state dict, to tell teachers apart in records."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class Teacher(nn.Module):
    """Frozen VGG truncated after its last tap; returns the tapped feature maps."""

    def __init__(self, backbone: str, taps: list[str], initialise: bool = True) -> None:
        """`initialise` False: for weights loaded next, torchvision's initialisation is skipped (see `_vgg_features`)."""
        super().__init__()
        self.tap_indices = tap_indices(backbone, taps)
        self.features = _vgg_features(backbone, initialise)[: self.tap_indices[-1] + 1]
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, state: dict[str, torch.Tensor], origin: str) -> None:
        """Load the `features` entries this truncated network uses; anything missing is an error."""
        needed = self.features.state_dict().keys()
        missing = [key for key in needed if key not in state]
        if missing:
            raise TeacherWeightsError(f"{origin} lacks teacher layers {missing[:4]}. {HOW_TO_PROVIDE_WEIGHTS}")
        try:
            self.features.load_state_dict({key: state[key] for key in needed}, strict=True)
        except RuntimeError as error:
            raise TeacherWeightsError(f"{origin} does not fit the teacher: {error}") from error

    def train(self, mode: bool = True) -> "Teacher":
        # The teacher stays in eval mode whatever its parent does.
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,H,W) normalised -> one (B,C_k,H/s_k,W/s_k) map per tap."""
        tapped = []
        for index, layer in enumerate(self.features):
            images = layer(images)
            if index in self.tap_indices:
                tapped.append(images)
        return tapped

    @property
    def tap_strides(self) -> list[int]:
        """Input pixels per position of each tap."""
        return [2 ** sum(isinstance(layer, nn.MaxPool2d) for layer in self.features[:index]) for index in self.tap_indices]

    @property
    def channels(self) -> list[int]:
        """Channel count of each tap: that of the last convolution before it."""
        out = []
        for index in self.tap_indices:
            convs = [layer for layer in self.features[: index + 1] if isinstance(layer, nn.Conv2d)]
            out.append(convs[-1].out_channels)
        return out
