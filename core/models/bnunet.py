"""A small residual U-Net with batch normalisation, in plain PyTorch: the shipped defaults' network.

Why not MONAI's ``UNet`` (still registered as ``resunet``/``unet3d``): two reasons measured on
this project's defaults.

- **Tile invariance.** MONAI's UNet normalises with instance norm, i.e. with the mean and
  variance of the window it is given. Under a sliding window the same pixel then gets a
  different answer for a different ``--tile``: on imagery unlike the training data 36-54 % of
  the satellite default's labels changed between 256 px windows and one whole-scene window.
  Batch norm in eval mode uses statistics fixed at training time, so a pixel's logits depend
  only on its receptive field, whatever the window.
- **Start-up.** Importing MONAI loads every MONAI sub-package (and torchvision's model zoo):
  2.6 s of a 13 s ``segsuite tile`` run went to loading a 0.8 MB network. This module needs
  only torch.

The layout follows MONAI's residual UNet (Kerfoot et al. 2018, "Left-ventricle quantification
using residual U-Net"), which the previous defaults used: every encoder level is a residual
unit that halves the resolution, the bottom level keeps it, and each decoder level joins the
skip connection by concatenation and doubles the resolution with a transposed convolution;
the last one produces the class logits at the input resolution. The network's stride is
``2 ** (len(channels) - 1)``; ``units`` sets the convolutions per residual unit; :class:`~segsuite.core.models.base.SegmentationModel` pads any
input up to it. ``dropout`` (channel dropout in the decoder) enables MC-dropout uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import SegmentationModel


def _layers(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module], type[nn.Module]]:
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout2d
    if dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Dropout3d
    raise ValueError(f"bnunet is 2D or 3D, not {dims}D")


class ResidualUnit(nn.Module):
    """``units`` x (conv-BN-ReLU) plus a shortcut (a strided 1x1 conv-BN when the shape changes).

    The first conv carries the stride. One unit (the default) costs what MONAI's residual unit
    with ``num_res_units=1`` costs; two make a ResNet basic block.
    """

    def __init__(self, dims: int, cin: int, cout: int, stride: int, units: int = 1) -> None:
        super().__init__()
        conv, _, norm, _ = _layers(dims)
        layers: list[nn.Module] = []
        for i in range(units):
            layers += [conv(cin if i == 0 else cout, cout, 3, stride=stride if i == 0 else 1, padding=1, bias=False),
                       norm(cout)]
            if i < units - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if cin == cout and stride == 1
                         else nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), norm(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class UpLevel(nn.Module):
    """Concatenate the skip, upsample x2 with a transposed conv; a residual unit refines all but the last."""

    def __init__(self, dims: int, cin: int, cout: int, last: bool, dropout: float, units: int) -> None:
        super().__init__()
        _, up, norm, drop = _layers(dims)
        self.up = up(cin, cout, 2, stride=2, bias=last)
        self.refine = None if last else nn.Sequential(
            norm(cout), nn.ReLU(inplace=True), *( [drop(dropout)] if dropout > 0 else [] ),
            ResidualUnit(dims, cout, cout, 1, units),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(torch.cat([x, skip], 1))
        return x if self.refine is None else self.refine(x)


class BNUNet(nn.Module):
    def __init__(self, dims: int, in_channels: int, num_classes: int, channels: Sequence[int], dropout: float,
                 units: int) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("bnunet needs at least two levels of channels, e.g. [16, 32, 64, 128]")
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels[:-1]:
            self.down.append(ResidualUnit(dims, cin, c, 2, units))
            cin = c
        self.bottom = ResidualUnit(dims, cin, channels[-1], 1, units)
        self.ups = nn.ModuleList()
        below = channels[-1]
        for level in reversed(range(len(channels) - 1)):
            last = level == 0
            out = num_classes if last else channels[level - 1]
            self.ups.append(UpLevel(dims, below + channels[level], out, last, dropout, units))
            below = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottom(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return x


def build_bnunet(in_channels: int, num_classes: int, spatial_dims: int = 2, channels: Sequence[int] = (16, 32, 64, 128),
                 dropout: float = 0.0, units: int = 1) -> SegmentationModel:
    channels = [int(c) for c in channels]
    if int(units) < 1:
        raise ValueError(f"bnunet: units must be at least 1, got {units}")
    net = BNUNet(spatial_dims, in_channels, num_classes, channels, float(dropout), int(units))
    return SegmentationModel(net, arch="bnunet", in_channels=in_channels, num_classes=num_classes,
                             spatial_dims=spatial_dims, stride=2 ** (len(channels) - 1), encoder_prefix=None,
                             options={"channels": channels, "dropout": float(dropout), "units": int(units)},
                             channels_last=True)
