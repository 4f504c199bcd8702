"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017), 2D or 3D.

No maintained library ships SegNet, so it is written here. The encoder is VGG-16-like
(conv-BN-ReLU stacks, 2/2/3/3/3 convolutions per stage); each max-pool remembers where
its maxima were, and the decoder's max-unpool puts values back at those positions before
densifying them with convolutions. That is SegNet's point: boundaries survive
downsampling without storing whole encoder feature maps as U-Net does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import SegmentationModel

_VGG16_CONVS = (2, 2, 3, 3, 3)


def _stack(cin: int, cout: int, n: int, dims: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [conv(cin if i == 0 else cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 2,
                 widths: Sequence[int] = (64, 128, 256, 512, 512), convs: Sequence[int] = _VGG16_CONVS) -> None:
        super().__init__()
        if len(widths) != len(convs):
            raise ValueError("widths and convs need one entry per stage")
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        unpool = nn.MaxUnpool2d if spatial_dims == 2 else nn.MaxUnpool3d
        self.pool = pool(2, stride=2, return_indices=True)
        self.unpool = unpool(2, stride=2)
        self.encoder = nn.ModuleList()
        cin = in_channels
        for w, n in zip(widths, convs):
            self.encoder.append(_stack(cin, w, n, spatial_dims))
            cin = w
        # decoder stage i mirrors encoder stage i: widths[i] -> widths[i-1] (or widths[0] at the top)
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(widths))):
            cout = widths[i - 1] if i > 0 else widths[0]
            self.decoder.append(_stack(widths[i], cout, convs[i], spatial_dims))
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.classifier = conv(widths[0], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape)
            x, idx = self.pool(x)
            indices.append(idx)
        for stage in self.decoder:
            x = self.unpool(x, indices.pop(), output_size=sizes.pop())
            x = stage(x)
        return self.classifier(x)


def build_segnet(in_channels: int, num_classes: int, spatial_dims: int = 2,
                 widths: Sequence[int] = (64, 128, 256, 512, 512), convs: Sequence[int] | None = None) -> SegmentationModel:
    from ..errors import SegsuiteError

    widths = tuple(int(w) for w in widths)
    convs = tuple(int(c) for c in convs) if convs is not None else (_VGG16_CONVS + (3,) * len(widths))[: len(widths)]
    if len(widths) != len(convs) or not widths:
        raise SegsuiteError(f"segnet: widths {widths} and convs {convs} need one entry per stage")
    net = SegNet(in_channels, num_classes, spatial_dims, widths, convs)
    return SegmentationModel(net, arch="segnet", in_channels=in_channels, num_classes=num_classes,
                             spatial_dims=spatial_dims, stride=2 ** len(widths), encoder_prefix="net.encoder",
                             options={"widths": list(widths), "convs": list(convs)})
