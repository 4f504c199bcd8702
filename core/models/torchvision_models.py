"""FCN and LR-ASPP from torchvision.

torchvision's FCN exists for ResNet-50/101 backbones (dilated to output stride 8); for
lighter encoders we put torchvision's own ``FCNHead`` on an smp encoder's deepest
feature map. LR-ASPP on MobileNetV3-Large is the real-time model (about 3 M parameters).
Neither ever downloads weights here (``weights=None, weights_backbone=None``).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel, replace_first_conv


class _EncoderFCN(nn.Module):
    """An smp encoder followed by torchvision's FCN head on its last feature map."""

    def __init__(self, encoder: str, in_channels: int, num_classes: int) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp
        from torchvision.models.segmentation.fcn import FCNHead

        self.encoder = smp.encoders.get_encoder(encoder, in_channels=in_channels, depth=5, weights=None)
        self.head = FCNHead(self.encoder.out_channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1])  # upsampled to the input size by SegmentationModel


def build_fcn(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet50") -> SegmentationModel:
    from torchvision.models.segmentation import fcn_resnet50, fcn_resnet101

    tv = {"resnet50": fcn_resnet50, "resnet101": fcn_resnet101}
    if encoder in tv:
        net = tv[encoder](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        replace_first_conv(net.backbone, in_channels)
        prefix, stride = "net.backbone", 8
    else:
        from .smp_models import _check_encoder

        _check_encoder(encoder)
        net = _EncoderFCN(encoder, in_channels, num_classes)
        prefix, stride = "net.encoder", 32
    return SegmentationModel(net, arch="fcn", in_channels=in_channels, num_classes=num_classes, spatial_dims=2,
                             stride=stride, encoder_prefix=prefix, options={"encoder": encoder})


def build_lraspp(in_channels: int, num_classes: int, spatial_dims: int = 2) -> SegmentationModel:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    replace_first_conv(net.backbone, in_channels)
    return SegmentationModel(net, arch="lraspp_mobilenet_v3", in_channels=in_channels, num_classes=num_classes,
                             spatial_dims=2, stride=16, encoder_prefix="net.backbone", options={})
