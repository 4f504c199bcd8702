"""DDRNet-23-slim, a two-branch real-time network (Hong, Pan, Sun and Jia, 2021).

Paper: Y. Hong, H. Pan, W. Sun, Y. Jia, "Deep Dual-resolution Networks for Real-time and
Accurate Semantic Segmentation of Road Scenes", arXiv:2101.06085 (IEEE T-ITS 2023).
Written here from the paper's description (its architecture table and its accounts of the
bilateral fusion, DAPPM and training loss); no code from the authors' repository.

Why DDRNet and not PIDNet (Xu, Xiong and Bhattacharyya, "PIDNet: A Real-time Semantic
Segmentation Network Inspired by PID Controllers", CVPR 2023): PIDNet-S reports a somewhat
higher Cityscapes mIoU at a similar speed but adds a third (derivative) branch, boundary-attention
fusion and a boundary head whose loss needs edge labels made from the masks; DDRNet's two
branches, one pyramid pooling module and one auxiliary head carry the idea both papers share (a
detail branch that never goes below 1/8 resolution, a context branch that does, exchanging
features), train with the loss every segsuite domain already has, and export to ONNX with
nothing but convolutions, average pooling and bilinear resizing. PIDNet's pooling module (PAPPM) is DAPPM with its scales computed
in parallel, so the pyramid here is the one both build on.

Layout (``planes`` = 32 is DDRNet-23-slim, 64 is DDRNet-23; smaller values are narrower variants):

    stem            two 3x3 stride-2 convolutions                                     1/4
    stage 2-3       residual blocks, then a stride-2 stage                            1/8
    stage 4, 5_1    detail branch: blocks at 1/8, ``planes * 2`` channels
                    context branch: stride-2 stages to 1/16 and 1/32
                    bilateral fusion after each stage: context -> 1x1 conv -> upsample, added to
                    detail; detail -> stride-2 3x3 conv(s), added to context
    stage 5_2       one bottleneck block per branch; the context one goes to 1/64
    DAPPM           pooled at 1/64 (average pools of kernel 5, 9, 17 and the global mean),
                    each scale refined with a 3x3 conv after adding the scale below it,
                    concatenated, compressed, plus a shortcut
    head            DAPPM output upsampled to 1/8 and added to the detail branch; 3x3 conv +
                    1x1 classifier; bilinear upsampling to the input size
    auxiliary head  the same head on the detail branch after stage 4, training only; its loss
                    is weighted 0.4 (the paper's alpha)

The network downsamples by 64, so :class:`SegmentationModel` pads any input to a multiple of 64
(replicating the border) and crops the logits back.

One departure from the paper: DAPPM's pooled scales apply BatchNorm and ReLU before pooling, not
after (see :class:`DAPPM`), so the global-mean scale never normalises a single value per channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel

STRIDE = 64
AUX_WEIGHT = 0.4  # the paper's training loss: L = L_main + 0.4 * L_aux
BN_MOMENTUM = 0.1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), _bn(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # sizes from the tensor (not a fixed factor): the 1/64 map of an odd multiple of 64 pools to
    # uneven sizes, and traced exports keep this as a shape computation, not a constant
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut, as in ResNet-18."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, last_relu: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, planes, 3, stride)
        self.conv2 = _conv_bn(planes, planes, 3, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == planes
                         else _conv_bn(cin, planes, 1, stride, relu=False))
        self.last_relu = last_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x)) + self.shortcut(x)
        return F.relu(out) if self.last_relu else out


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 with expansion 2 (DDRNet's last stage widens by 2, not ResNet's 4)."""

    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, last_relu: bool = True) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(_conv_bn(cin, planes, 1), _conv_bn(planes, planes, 3, stride),
                                  _conv_bn(planes, cout, 1, relu=False))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, relu=False)
        self.last_relu = last_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x) + self.shortcut(x)
        return F.relu(out) if self.last_relu else out


def _stage(block: type, cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    # the last block leaves its sum un-rectified: the bilateral fusion adds to it first, then ReLU
    layers = [block(cin, planes, stride, last_relu=blocks > 1)]
    cin = planes * block.expansion
    for i in range(1, blocks):
        layers.append(block(cin, planes, 1, last_relu=i < blocks - 1))
    return nn.Sequential(*layers)


def _bn_relu_conv(cin: int, cout: int, k: int) -> nn.Sequential:
    # DAPPM and the heads use pre-activation order (BN, ReLU, conv)
    return nn.Sequential(_bn(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2, bias=False))


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module, as the DDRNet paper describes it.

    Pyramid pooling at 1/64 where the context branch is already small; unlike PSPNet's module the
    scales are fused hierarchically: each pooled scale, upsampled, is added to the refined scale
    below it before its own 3x3 convolution, so coarse context mixes with finer context in steps.
    Each pooled scale normalises and rectifies before pooling (the paper pools first): the
    global-mean scale would otherwise hand BatchNorm one value per channel, which fails in
    training at batch size 1 and gives noisy statistics at small batches.
    """

    def __init__(self, cin: int, branch: int, cout: int) -> None:
        super().__init__()
        pools: list[nn.Module] = [nn.AvgPool2d(k, stride=s, padding=s) for k, s in ((5, 2), (9, 4), (17, 8))]
        pools.append(nn.AdaptiveAvgPool2d(1))
        self.scale0 = _bn_relu_conv(cin, branch, 1)
        self.pooled = nn.ModuleList(
            nn.Sequential(_bn(cin), nn.ReLU(inplace=True), p, nn.Conv2d(cin, branch, 1, bias=False)) for p in pools)
        self.refine = nn.ModuleList(_bn_relu_conv(branch, branch, 3) for _ in pools)
        self.compress = _bn_relu_conv(branch * (len(pools) + 1), cout, 1)
        self.shortcut = _bn_relu_conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales = [self.scale0(x)]
        for pool, refine in zip(self.pooled, self.refine):
            scales.append(refine(_up(pool(x), x) + scales[-1]))
        return self.compress(torch.cat(scales, 1)) + self.shortcut(x)


class SegHead(nn.Module):
    """BN-ReLU-3x3 conv, BN-ReLU-1x1 classifier; upsampled to the input size by the caller."""

    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__()
        self.conv = _bn_relu_conv(cin, mid, 3)
        self.classify = nn.Sequential(_bn(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.conv(x))


class DDRNet(nn.Module):
    """The bare DDRNet: logits at the input size; in training mode ``(logits, aux_logits)``."""

    aux_weights = (AUX_WEIGHT,)

    def __init__(self, in_channels: int, num_classes: int, planes: int = 32, spp_planes: int | None = None,
                 head_planes: int | None = None, aux_head: bool = True) -> None:
        super().__init__()
        p = planes
        spp_planes = spp_planes or 4 * p
        head_planes = head_planes or 2 * p
        self.stem = nn.Sequential(_conv_bn(in_channels, p, 3, 2), _conv_bn(p, p, 3, 2))
        self.layer1 = _stage(BasicBlock, p, p, 2)                       # 1/4
        self.layer2 = _stage(BasicBlock, p, 2 * p, 2, stride=2)         # 1/8
        # context (low-resolution) branch
        self.layer3 = _stage(BasicBlock, 2 * p, 4 * p, 2, stride=2)     # 1/16
        self.layer4 = _stage(BasicBlock, 4 * p, 8 * p, 2, stride=2)     # 1/32
        self.layer5 = _stage(Bottleneck, 8 * p, 8 * p, 1, stride=2)     # 1/64, 16p channels
        # detail (high-resolution) branch, always 1/8
        self.layer3_d = _stage(BasicBlock, 2 * p, 2 * p, 2)
        self.layer4_d = _stage(BasicBlock, 2 * p, 2 * p, 2)
        self.layer5_d = _stage(Bottleneck, 2 * p, 2 * p, 1)             # 4p channels
        # bilateral fusion
        self.compress3 = _conv_bn(4 * p, 2 * p, 1, relu=False)
        self.compress4 = _conv_bn(8 * p, 2 * p, 1, relu=False)
        self.down3 = _conv_bn(2 * p, 4 * p, 3, 2, relu=False)
        self.down4 = nn.Sequential(_conv_bn(2 * p, 4 * p, 3, 2), _conv_bn(4 * p, 8 * p, 3, 2, relu=False))
        self.spp = DAPPM(16 * p, spp_planes, 4 * p)
        self.head = SegHead(4 * p, head_planes, num_classes)
        self.aux = SegHead(2 * p, head_planes, num_classes) if aux_head else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        x = self.layer2(self.layer1(self.stem(x)))
        # stage 4: split, then exchange
        ctx = self.layer3(x)
        det = self.layer3_d(F.relu(x))
        ctx, det = ctx + self.down3(F.relu(det)), det + _up(self.compress3(F.relu(ctx)), det)
        aux_in = det
        # stage 5_1
        ctx = self.layer4(F.relu(ctx))
        det = self.layer4_d(F.relu(det))
        ctx, det = ctx + self.down4(F.relu(det)), det + _up(self.compress4(F.relu(ctx)), det)
        # stage 5_2, pyramid pooling, head
        det = self.layer5_d(F.relu(det))
        ctx = _up(self.spp(self.layer5(F.relu(ctx))), det)
        logits = F.interpolate(self.head(det + ctx), size=size, mode="bilinear", align_corners=False)
        if self.training and self.aux is not None:
            aux = F.interpolate(self.aux(aux_in), size=size, mode="bilinear", align_corners=False)
            return logits, aux
        return logits


def build_ddrnet(in_channels: int, num_classes: int, spatial_dims: int = 2, planes: int = 32,
                 aux_head: bool = True) -> SegmentationModel:
    """DDRNet-23-slim (``planes=32``; 64 is DDRNet-23, 16 or 8 are narrower variants)."""
    from ..errors import SegsuiteError

    if isinstance(planes, bool) or not isinstance(planes, int) or planes < 4:
        raise SegsuiteError(f"ddrnet: planes={planes!r} must be a whole number of at least 4 (32 is DDRNet-23-slim)")
    net = DDRNet(in_channels, num_classes, planes=planes, aux_head=bool(aux_head))
    return SegmentationModel(net, arch="ddrnet", in_channels=in_channels, num_classes=num_classes, spatial_dims=2,
                             stride=STRIDE, encoder_prefix=None, options={"planes": planes, "aux_head": bool(aux_head)},
                             # measured on whole 512x1024 frames: its convolutions gain 4-8 % channels-last,
                             # converting the 19-class output back costs more (video 5.9 vs 7.1 FPS)
                             channels_last=False)
