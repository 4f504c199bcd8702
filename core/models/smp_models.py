"""U-Net (2D), DeepLabV3, DeepLabV3+ and PSPNet from segmentation-models-pytorch.

smp builds these from any of its encoders and takes ``in_channels`` natively. We never
let it fetch ImageNet weights (``encoder_weights=None``); pretrained weights come from a
local file through ``--pretrained``.
"""

from __future__ import annotations

from .base import SegmentationModel

ENCODERS_TESTED = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2", "efficientnet-b0")


def _check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp

    from ..errors import UnknownNameError

    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        import difflib

        close = difflib.get_close_matches(encoder, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownNameError(f"unknown encoder {encoder!r}{hint}; e.g. {', '.join(ENCODERS_TESTED)}")


def build_unet(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet18",
               decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> SegmentationModel:
    import segmentation_models_pytorch as smp

    _check_encoder(encoder)
    net = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes,
                   decoder_channels=tuple(decoder_channels))
    return SegmentationModel(net, arch="unet", in_channels=in_channels, num_classes=num_classes, spatial_dims=2,
                             stride=32, encoder_prefix="net.encoder",
                             options={"encoder": encoder, "decoder_channels": list(decoder_channels)})


def _deeplab(plus: bool, in_channels: int, num_classes: int, encoder: str, output_stride: int) -> SegmentationModel:
    import segmentation_models_pytorch as smp

    from ..errors import SegsuiteError

    _check_encoder(encoder)
    if output_stride not in (8, 16):
        raise SegsuiteError(f"output_stride must be 8 or 16 for DeepLab, got {output_stride}")
    cls = smp.DeepLabV3Plus if plus else smp.DeepLabV3
    net = cls(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes,
              encoder_output_stride=output_stride)
    arch = "deeplabv3plus" if plus else "deeplabv3"
    return SegmentationModel(net, arch=arch, in_channels=in_channels, num_classes=num_classes, spatial_dims=2,
                             stride=32, encoder_prefix="net.encoder",
                             options={"encoder": encoder, "output_stride": output_stride})


def build_deeplabv3(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet50",
                    output_stride: int = 8) -> SegmentationModel:
    return _deeplab(False, in_channels, num_classes, encoder, output_stride)


def build_deeplabv3plus(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet50",
                        output_stride: int = 16) -> SegmentationModel:
    return _deeplab(True, in_channels, num_classes, encoder, output_stride)


def build_pspnet(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet50") -> SegmentationModel:
    import segmentation_models_pytorch as smp

    _check_encoder(encoder)
    net = smp.PSPNet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes)
    # PSPNet pools the stride-8 feature map into 1/2/3/6 bins; pad to a multiple of 48 so
    # every bin boundary falls on a whole feature cell.
    return SegmentationModel(net, arch="pspnet", in_channels=in_channels, num_classes=num_classes, spatial_dims=2,
                             stride=48, encoder_prefix="net.encoder", options={"encoder": encoder})
