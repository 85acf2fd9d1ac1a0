"""The global branch: what is missing or out of place, which a local comparison cannot see.

EfficientAD's idea on this project's teacher. An autoencoder sees the whole image through a
bottleneck of a few numbers and reconstructs the teacher's deepest features from it: it can only
reproduce the layout of a normal part. A head on the student learns to predict the autoencoder's
output from the student's local view. On a good part they agree; where a component is missing,
moved or a lead bent, the autoencoder draws the normal layout while the student's local view does
not, and they disagree. The disagreement (1 - cos per position) is the global map.

Both maps, local and global, are brought to one scale before they are added: each is mapped so
that its 0.9 quantile on held-out good images is 0 and its 0.995 quantile 0.1 (EfficientAD's
normalisation), constants kept as buffers of the network so the module's forward is the whole map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_CHANNELS = (32, 32, 64, 64, 64)
BOTTLENECK = 64
DECODER_CHANNELS = 64
# The quantiles of good maps that become 0 and 0.1 (EfficientAD's q_a and q_b).
LOW_QUANTILE, HIGH_QUANTILE = 0.9, 0.995
NORMALISED_AT_HIGH_QUANTILE = 0.1


class GlobalAutoencoder(nn.Module):
    """(B,3,H,W) normalised image -> (B,C,H/s,W/s): the teacher's deepest features, through a
    1x1 bottleneck. Built for one input shape (the recipe's), as the bottleneck spans the image."""

    def __init__(self, input_shape: tuple[int, int], out_channels: int, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for channels in ENCODER_CHANNELS:
            layers += [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_channels = channels
        self.encoder = nn.Sequential(*layers)
        with torch.no_grad():
            encoded_shape = tuple(self.encoder(torch.zeros(1, 3, *input_shape)).shape[-2:])
        # One convolution over the whole encoded image: the bottleneck sees everything at once.
        self.bottleneck = nn.Conv2d(in_channels, BOTTLENECK, encoded_shape)
        self.target_shape = (input_shape[0] // stride, input_shape[1] // stride)
        # Decoding steps: the target shape halved four, three, two, one and zero times.
        self.decoder_shapes = [
            (max(1, self.target_shape[0] // 2**k), max(1, self.target_shape[1] // 2**k)) for k in (4, 3, 2, 1, 0)
        ]
        self.decoder = nn.ModuleList()
        in_channels = BOTTLENECK
        for _ in self.decoder_shapes:
            self.decoder.append(nn.Sequential(nn.Conv2d(in_channels, DECODER_CHANNELS, 3, padding=1), nn.ReLU(inplace=True)))
            in_channels = DECODER_CHANNELS
        self.output = nn.Conv2d(DECODER_CHANNELS, out_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        code = self.bottleneck(self.encoder(images))
        for shape, block in zip(self.decoder_shapes, self.decoder):
            code = block(F.interpolate(code, size=shape, mode="bilinear", align_corners=False))
        return self.output(code)


def normalised(maps: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Maps in their own units -> 0 at their low quantile on good images, 0.1 at their high one."""
    low, high = quantiles[0], quantiles[1]
    return NORMALISED_AT_HIGH_QUANTILE * (maps - low) / (high - low).clamp_min(1e-12)
