"""The wrapper every architecture is returned in.

Whatever library builds the network (segmentation-models-pytorch, torchvision, MONAI or
our own SegNet), callers get a :class:`SegmentationModel`: logits of shape
``(N, num_classes, *spatial)`` for any input size (inputs are padded up to the network's
stride and the logits cropped back, so a 500x375 image never raises a shape error), a
named encoder that can be frozen, and the build arguments for the model card. A network
that declares ``aux_weights`` (DDRNet) returns :class:`AuxLogits` in training mode, so the
trainer can weight its auxiliary heads' losses; in eval mode every model returns logits only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class AuxLogits(NamedTuple):
    """What a network with auxiliary heads returns in training mode (deep supervision).

    ``logits`` is the main output; ``aux`` are the auxiliary heads' logits, at the input size
    too; ``weights`` are their loss weights as the architecture's paper gives them (DDRNet: 0.4).
    :func:`segsuite.core.aux_loss.supervised_loss` combines them; in eval mode, and in every
    export, the model returns the main logits alone.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]


class SegmentationModel(nn.Module):
    def __init__(
        self,
        net: nn.Module,
        *,
        arch: str,
        in_channels: int,
        num_classes: int,
        spatial_dims: int,
        stride: int,
        encoder_prefix: str | None,
        options: dict[str, Any] | None = None,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.arch = arch
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.stride = int(stride)
        self.encoder_prefix = encoder_prefix
        self.options = dict(options or {})
        # The memory layout Predictor runs the network in on a CPU, where oneDNN's convolutions
        # are faster channels-last (1.5-2.3x for bnunet, 1.15-1.33x for the smp/torchvision
        # models, measured): True for architectures checked to take it (bnunet); False for those
        # it does not speed up (MONAI's instance-norm U-Nets; DDRNet on whole frames); None lets
        # Predictor try it and fall back to the plain layout when the network refuses it.
        self.channels_last = channels_last

    # -- forward ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"{self.arch} expects a {self.spatial_dims + 2}D tensor (N, C, {'D, ' if self.spatial_dims == 3 else ''}H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.arch} was built for {self.in_channels} input channels, got {x.shape[1]}")
        size = x.shape[2:]
        padded = [math.ceil(s / self.stride) * self.stride for s in size]
        pads: list[int] = []
        for s, p in zip(reversed(size), reversed(padded)):
            pads += [0, p - s]  # pad at the far end only, so cropping back is a plain slice
        if any(pads):
            # replicate, not zeros: a constant band would change statistics near the border
            x = F.pad(x, pads, mode="replicate")
        out = self.net(x)
        if isinstance(out, dict):  # torchvision segmentation models
            out = out["out"]
        elif isinstance(out, (tuple, list)):  # aux heads
            weights = tuple(getattr(self.net, "aux_weights", ()))
            if self.training and weights and len(out) == len(weights) + 1:
                main, *aux = (self._to_input_size(o, padded, size) for o in out)
                return AuxLogits(main, tuple(aux), weights)
            out = out[0]
        return self._to_input_size(out, padded, size)

    def _to_input_size(self, out: torch.Tensor, padded: list[int], size: torch.Size) -> torch.Tensor:
        if tuple(out.shape[2:]) != tuple(padded):
            out = F.interpolate(out, size=padded, mode="bilinear" if self.spatial_dims == 2 else "trilinear", align_corners=False)
        if tuple(padded) != tuple(size):
            out = out[(..., *[slice(0, s) for s in size])]
        return out

    # -- encoder ------------------------------------------------------------------
    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        if self.encoder_prefix is None:
            return iter(())
        prefix = self.encoder_prefix + "."
        return (p for n, p in self.named_parameters() if n.startswith(prefix))

    def freeze_encoder(self, frozen: bool = True) -> int:
        """(Un)freeze the encoder's parameters; returns how many tensors changed.

        BatchNorm statistics of a frozen encoder also stop updating (its modules are put
        in eval mode on every ``train()`` call), the usual practice when fine-tuning.
        """
        params = list(self.encoder_parameters())
        if not params:
            raise ValueError(f"{self.arch} has no separable encoder to freeze")
        for p in params:
            p.requires_grad_(not frozen)
        self._encoder_frozen = frozen
        return len(params)

    def unfreeze_encoder(self) -> int:
        return self.freeze_encoder(False)

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if mode and getattr(self, "_encoder_frozen", False) and self.encoder_prefix:
            self.get_submodule(self.encoder_prefix).eval()
        return self

    def card(self) -> dict[str, Any]:
        """Build arguments, enough to rebuild this model with :func:`build_model`."""
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "spatial_dims": self.spatial_dims,
            "options": dict(self.options),
        }


def first_conv(module: nn.Module) -> tuple[str, nn.Module]:
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            return name, m
    raise ValueError("no convolution found")


def adapt_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Re-use pretrained first-layer filters for another number of input channels.

    One channel: the sum over RGB (a grey image is roughly the sum of its channels).
    Otherwise the filters are repeated cyclically and rescaled by ``old / new`` so that the
    expected activation stays the same (the recipe timm uses for ``in_chans``).
    """
    old = weight.shape[1]
    if in_channels == old:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / old)
    w = weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :in_channels]
    return w * (old / in_channels)


def replace_first_conv(module: nn.Module, in_channels: int) -> None:
    """Swap the first convolution of ``module`` for one taking ``in_channels`` inputs."""
    name, conv = first_conv(module)
    if conv.in_channels == in_channels:
        return
    cls = type(conv)
    new = cls(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_conv_weight(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, new)
