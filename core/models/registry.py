"""One registry for every architecture: ``build_model`` and ``list_models``.

The core table below names factories by ``"module:function"`` and imports them only when
a model is built, so listing models is cheap and nothing registers itself as an import
side effect. Plugins add architectures through the ``segsuite_models`` hook.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SegsuiteError, UnknownNameError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    target: str | Callable[..., Any]
    spatial_dims: tuple[int, ...]
    source: str
    description: str

    def factory(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module, __package__), func)


CORE_MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("unet", ".smp_models:build_unet", (2, 3), "segmentation-models-pytorch",
                   "U-Net, encoder resnet18/34/50, mobilenet_v2...; spatial_dims=3 builds unet3d"),
        ModelEntry("unet3d", ".monai_models:build_unet3d", (2, 3), "MONAI",
                   "MONAI residual U-Net for volumes (also 2D)"),
        ModelEntry("resunet", ".monai_models:build_resunet", (2, 3), "MONAI",
                   "MONAI residual U-Net, small and fast; 2D by default"),
        ModelEntry("bnunet", ".bnunet:build_bnunet", (2, 3), "segsuite",
                   "residual U-Net with batch norm, plain PyTorch: tile-invariant, no MONAI import; the shipped defaults"),
        ModelEntry("fcn", ".torchvision_models:build_fcn", (2,), "torchvision",
                   "FCN; torchvision's FCN-ResNet50/101, or FCN head on another encoder"),
        ModelEntry("deeplabv3", ".smp_models:build_deeplabv3", (2,), "segmentation-models-pytorch",
                   "DeepLabV3 (ASPP), output_stride 8 or 16"),
        ModelEntry("deeplabv3plus", ".smp_models:build_deeplabv3plus", (2,), "segmentation-models-pytorch",
                   "DeepLabV3+ (ASPP + low-level decoder), output_stride 8 or 16"),
        ModelEntry("pspnet", ".smp_models:build_pspnet", (2,), "segmentation-models-pytorch",
                   "PSPNet (pyramid pooling)"),
        ModelEntry("segnet", ".segnet:build_segnet", (2, 3), "segsuite",
                   "SegNet, VGG-16-like encoder with max-unpooling decoder"),
        ModelEntry("lraspp_mobilenet_v3", ".torchvision_models:build_lraspp", (2,), "torchvision",
                   "LR-ASPP on MobileNetV3-Large, the real-time model for video and CPU"),
        ModelEntry("ddrnet", ".ddrnet:build_ddrnet", (2,), "segsuite",
                   "DDRNet-23-slim, two-branch real-time network (1/8 detail + DAPPM context); planes=N sets width"),
    )
}


def _all_models(registry: Any = None) -> dict[str, ModelEntry]:
    entries = dict(CORE_MODELS)
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    for name, factory in registry.plugin_models(reserved=CORE_MODELS).items():
        owner = registry._model_owner.get(name, "plugin")
        entries[name] = ModelEntry(name, factory, (2, 3), f"plugin {owner}", (factory.__doc__ or "").strip().split("\n")[0])
    return entries


def list_models(pattern: str = "*", registry: Any = None) -> list[ModelEntry]:
    """Registered architectures whose name matches a shell-style wildcard."""
    return [e for n, e in sorted(_all_models(registry).items()) if fnmatch.fnmatch(n, pattern)]


def model_entry(name: str, registry: Any = None, entries: dict[str, ModelEntry] | None = None) -> ModelEntry:
    """The registry entry for ``name``; a one-line error with suggestions when unknown."""
    entries = entries if entries is not None else _all_models(registry)
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownNameError(f"unknown model {name!r}{hint}; available: {', '.join(sorted(entries))}")
    return entries[name]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["encoder=resnet50", "output_stride=16"]`` -> typed dict (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SegsuiteError(f"model option {pair!r} must look like key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    spatial_dims: int = 2,
    *,
    pretrained: str | None = None,
    registry: Any = None,
    **options: Any,
) -> Any:
    """Build an architecture wrapped as a :class:`~segsuite.core.models.base.SegmentationModel`.

    ``pretrained`` is a local weights file (torchvision/timm/smp state dict, safetensors or
    a segsuite checkpoint) loaded with first-conv adaptation and head replacement; the
    report of what was loaded is on ``model.pretrained_report``.
    """
    from .base import SegmentationModel

    entries = _all_models(registry)
    model_entry(name, registry, entries)
    if name == "unet" and spatial_dims == 3:
        name = "unet3d"
        options.pop("encoder", None)
    entry = entries[name]
    if spatial_dims not in entry.spatial_dims:
        raise SegsuiteError(f"model {name!r} is {' or '.join(map(str, entry.spatial_dims))}D only, not {spatial_dims}D")
    if in_channels < 1 or num_classes < 1:
        raise SegsuiteError(f"in_channels and num_classes must be positive (got {in_channels}, {num_classes})")
    factory = entry.factory()
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p not in ("in_channels", "num_classes", "spatial_dims")]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise SegsuiteError(
                f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(allowed) or 'none'}"
            )
    model = factory(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, **options)
    if not isinstance(model, SegmentationModel):
        model = SegmentationModel(model, arch=name, in_channels=in_channels, num_classes=num_classes,
                                  spatial_dims=spatial_dims, stride=int(getattr(model, "segsuite_stride", 1)),
                                  encoder_prefix=None, options=options)
    if pretrained is not None:
        from .pretrained import load_pretrained

        model.pretrained_report = load_pretrained(model, pretrained)
    return model


def model_from_card(card: Mapping[str, Any], registry: Any = None) -> Any:
    """Rebuild the architecture a model card describes (weights not loaded)."""
    return build_model(card["arch"], card["in_channels"], card["num_classes"], card.get("spatial_dims", 2),
                       registry=registry, **dict(card.get("options", {})))
