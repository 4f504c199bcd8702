"""Seg-Grad-CAM: which parts of the input a segmentation model's decision for one class rests on.

Grad-CAM (Selvaraju et al., 2017) explains a classifier's score through a feature layer:
each feature channel is weighted by the spatial mean of the score's gradient with respect to
it, the weighted channels are summed and negative evidence is cut off with a ReLU. For
segmentation (Vinogradova et al., 2020, "Seg-Grad-CAM") the score is the class's logit summed
over a region of pixels. Here that region is where the model predicts the class; when the class
is predicted nowhere the whole image is used instead (and the result says so). The map is
upsampled to the input size and divided by its maximum, so it lies in [0, 1].

Everything works on ``(N, C, *S)`` tensors, 2D or 3D. The feature layer is chosen
automatically unless named. One forward pass with hooks on every module records when each
module starts and finishes and the shapes it takes and returns. The segmentation head is the
last convolution to start that returns one channel per class; the default target is the tensor
going into it (``"HEAD:input"``), i.e. the last feature map, when that map is at least 1/8 of
the input size on every axis; otherwise the last module that finished before the head started
and returns a map that large (a module called more than once, like a shared pooling layer, never
qualifies).

Why the head's input and not a deeper layer: in networks with instance normalisation (the MONAI
U-Nets, whose last up-sampling block normalises its output), every layer before the last
normalisation gets gradients whose spatial mean is removed per channel, so its Grad-CAM weights
are near zero and the map is noise. The result says so (``normalised_after``) when a named layer
is in that position.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import SegsuiteError, UnknownNameError

MIN_FRACTION = 8
"""The automatic layer's output is at least 1/MIN_FRACTION of the input size on every axis."""
SEARCH_SIDE = 256
"""The layer search runs on a copy of the input at most this large per axis (a quarter of it in 3D)."""
INPUT_SUFFIX = ":input"
"""``--layer NAME:input`` targets the tensor going into module NAME instead of its output."""

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_SPATIAL_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class LayerInfo:
    name: str  # a module name, or "NAME:input" for the tensor going into module NAME
    shape: tuple[int, ...]
    calls: int
    start: int  # when the module (last) started, in the forward pass
    order: int  # when it (last) finished
    kind: str  # the module's class name
    is_head: bool = False  # the segmentation head: the last convolution to start that returns class maps


@dataclass
class CamResult:
    """Class-activation maps ``cam`` ``(N, *S)`` in [0, 1] and the predicted labels ``(N, *S)``."""

    cam: torch.Tensor
    labels: torch.Tensor
    class_index: int
    layer: str
    layer_shape: tuple[int, ...]
    region: list[str]  # per sample: "predicted" or "image" (the class was predicted nowhere)
    normalised_after: list[str] = field(default_factory=list)
    """Instance-norm layers that ran after the target layer: they make its Grad-CAM weights unreliable."""

    def mass_inside(self, mask: torch.Tensor | np.ndarray) -> list[float | None]:
        """Share of each map's total inside ``mask`` ``(N, *S)`` (None for an all-zero map)."""
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).to(self.cam.device).bool()
        out: list[float | None] = []
        for n in range(self.cam.shape[0]):
            total = float(self.cam[n].sum())
            out.append(None if total <= 0 else float(self.cam[n][m[n]].sum()) / total)
        return out


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name}


def feature_layers(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> list[LayerInfo]:
    """Every submodule that returned a tensor in one forward pass of ``x``, in the order they finished.

    The segmentation head is the last convolution to start that runs once and returns
    ``num_classes`` channels (default: the model's output channels); its input is listed too, as
    ``"NAME:input"``, just before it.
    """
    seen: dict[str, dict[str, Any]] = {}
    counter = [0]
    modules = _modules(model)

    def on_start(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, inputs: Any) -> None:
            counter[0] += 1
            entry = seen.setdefault(name, {"calls": 0})
            entry["start"] = counter[0]
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            entry["input"] = tuple(first.shape) if first is not None else None

        return hook

    def on_finish(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            counter[0] += 1
            entry = seen[name]
            entry["calls"] += 1
            entry["order"] = counter[0]
            entry["output"] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        return hook

    handles = []
    for name, m in modules.items():
        handles.append(m.register_forward_pre_hook(on_start(name)))
        handles.append(m.register_forward_hook(on_finish(name)))
    try:
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    if num_classes is None:
        num_classes = int(final.shape[1]) if isinstance(final, torch.Tensor) else None
    heads = [n for n, e in seen.items() if isinstance(modules[n], _CONVS) and e.get("calls") == 1
             and e.get("output") is not None and e["output"][1] == num_classes]
    head = max(heads, key=lambda n: seen[n]["start"]) if heads else None
    infos = [LayerInfo(name, e["output"], e["calls"], e["start"], e["order"], type(modules[name]).__name__, is_head=name == head)
             for name, e in seen.items() if e.get("output") is not None]
    if head is not None and seen[head]["input"] is not None:
        e = seen[head]
        infos.append(LayerInfo(head + INPUT_SUFFIX, e["input"], 1, e["start"], e["start"], f"input of {type(modules[head]).__name__}"))
    return sorted(infos, key=lambda i: i.order)


def default_layer(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> LayerInfo:
    """The automatic target layer for ``x`` (see the module docstring); a one-line error when none fits."""
    x = _search_input(x)
    infos = feature_layers(model, x, num_classes)
    size = x.shape[2:]

    def usable(i: LayerInfo) -> bool:
        return (i.calls == 1 and len(i.shape) == x.ndim and i.shape[0] == x.shape[0]
                and all(s * MIN_FRACTION >= n for s, n in zip(i.shape[2:], size)))

    head = next((i for i in infos if i.is_head), None)
    if head is not None:
        head_input = next((i for i in infos if i.name == head.name + INPUT_SUFFIX), None)
        if head_input is not None and usable(head_input):
            return head_input
        before = [i for i in infos if usable(i) and i.order < head.start]
    else:  # no head found: skip whatever returns class maps
        classes = num_classes if num_classes is not None else int(getattr(model, "num_classes", 0)) or None
        before = [i for i in infos if usable(i) and i.shape[1] != classes]
    if not before:
        raise SegsuiteError(f"no feature layer of {type(model).__name__} returns a map of at least 1/{MIN_FRACTION} of the "
                            "input size; name one with --layer (a module name such as net.decoder)")
    return before[-1]


def _search_input(x: torch.Tensor) -> torch.Tensor:
    """One sample, shrunk to at most SEARCH_SIDE per axis (a quarter in 3D): which layer qualifies
    depends only on sizes relative to the input, and small is quick."""
    x = x[:1].detach()
    d = x.ndim - 2
    cap = SEARCH_SIDE if d <= 2 else SEARCH_SIDE // 4
    if all(s <= cap for s in x.shape[2:]):
        return x
    size = [min(int(s), cap) for s in x.shape[2:]]
    return F.interpolate(x, size=size, mode=_INTERP[d], align_corners=False)


def _check_layer(model: nn.Module, name: str) -> nn.Module:
    modules = _modules(model)
    base = name[: -len(INPUT_SUFFIX)] if name.endswith(INPUT_SUFFIX) else name
    if base not in modules:
        close = difflib.get_close_matches(base, list(modules), n=4, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownNameError(f"the model has no layer {name!r}{hint}; layers are module names such as "
                               f"{', '.join(list(modules)[:3])}, optionally with {INPUT_SUFFIX} for the module's input")
    return modules[base]


def seg_grad_cam(model: nn.Module, x: torch.Tensor, class_index: int, *, layer: str | None = None,
                 valid: torch.Tensor | None = None) -> CamResult:
    """Seg-Grad-CAM of class ``class_index`` for the normalised input ``x`` ``(N, C, *S)``.

    ``layer`` names a module (``model.named_modules()``), whose output is used, or
    ``"NAME:input"`` for the tensor going into it; by default :func:`default_layer` picks one.
    ``valid`` ``(N, *S)`` (bool) marks pixels that count (nodata outside): the predicted region and
    the map are restricted to it. The model runs in inference mode.
    """
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise SegsuiteError("explanations need the model's gradients: use a segsuite .safetensors checkpoint, not an ONNX export")
    was_training = model.training
    model.eval()
    d = x.ndim - 2
    try:
        name = layer if layer is not None else default_layer(model, x).name
        module = _check_layer(model, name)
        captured: dict[str, torch.Tensor] = {}
        norms_after: list[str] = []

        # the hooks hand later layers a copy: an in-place operation downstream (ReLU(inplace=True))
        # must not change the activations the gradient is taken against
        def capture_output(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor):
                captured["a"] = output
                return output.clone()
            return None

        def capture_input(_module: nn.Module, inputs: Any) -> Any:
            if inputs and isinstance(inputs[0], torch.Tensor):
                captured["a"] = inputs[0]
                return (inputs[0].clone(), *inputs[1:])
            return None

        def norm_seen(norm_name: str) -> Callable[..., None]:
            def hook(*_args: Any) -> None:
                if "a" in captured:
                    norms_after.append(norm_name)

            return hook

        if name.endswith(INPUT_SUFFIX):
            handles = [module.register_forward_pre_hook(capture_input)]
        else:
            handles = [module.register_forward_hook(capture_output)]
        handles += [m.register_forward_hook(norm_seen(n)) for n, m in _modules(model).items() if isinstance(m, _SPATIAL_NORMS)]
        try:
            with torch.enable_grad():
                xin = x.detach().clone().requires_grad_(True)  # gradients flow even with frozen weights
                logits = model(xin).float()
                if not 0 <= class_index < logits.shape[1]:
                    raise SegsuiteError(f"class index {class_index} is outside the model's {logits.shape[1]} classes")
                acts = captured.get("a")
                if acts is None:
                    raise SegsuiteError(f"layer {name!r} did not see a tensor in the forward pass; choose another --layer")
                if acts.ndim != x.ndim or acts.shape[0] != x.shape[0]:
                    raise SegsuiteError(f"layer {name!r} has shape {tuple(acts.shape)}, not a {d}D feature map; "
                                        "choose another --layer")
                labels = logits.detach().argmax(1)
                region = labels == class_index
                if valid is not None:
                    region &= valid.to(region.device).bool()
                kinds = []
                for n in range(region.shape[0]):
                    if region[n].any():
                        kinds.append("predicted")
                    else:  # predicted nowhere: explain the class's score over the whole (valid) image
                        region[n] = valid[n].to(region.device).bool() if valid is not None else True
                        kinds.append("image")
                score = (logits[:, class_index] * region).sum()
                grads = torch.autograd.grad(score, acts, allow_unused=True)[0]
                if grads is None:
                    raise SegsuiteError(f"the logits do not depend on layer {name!r}; choose another --layer")
        finally:
            for h in handles:
                h.remove()
    finally:
        model.train(was_training)
    acts = acts.detach()
    weights = grads.mean(dim=tuple(range(2, acts.ndim)), keepdim=True)
    cam = torch.relu((weights * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=_INTERP[d], align_corners=False)[:, 0].clamp(min=0)
    if valid is not None:
        cam = cam * valid.to(cam.device)
    peak = cam.flatten(1).amax(1).view(-1, *([1] * d))
    cam = torch.where(peak > 0, cam / peak.clamp(min=1e-20), torch.zeros_like(cam))
    return CamResult(cam=cam, labels=labels, class_index=class_index, layer=name, layer_shape=tuple(acts.shape),
                     region=kinds, normalised_after=sorted(set(norms_after)))


# -- images --------------------------------------------------------------------------


def class_index(class_map: Any, name: str) -> int:
    """Index of class ``name`` (exact, else case-insensitive); a one-line error listing the classes."""
    names = list(class_map.names)
    if name in names:
        return names.index(name)
    lower = [n.lower() for n in names]
    if name.lower() in lower and lower.count(name.lower()) == 1:
        return lower.index(name.lower())
    raise UnknownNameError(f"unknown class {name!r}; the model's classes are: {', '.join(names)}")


def fit_channels(array: np.ndarray, channels: int, path: Any = "") -> np.ndarray:
    """Bring an image's channels to what the model takes: drop alpha, grey <-> colour; else a one-line error."""
    arr = np.asarray(array)
    c = arr.shape[0]
    if c == channels:
        return arr
    if channels == 1 and c in (3, 4):  # luminance (ITU-R BT.601), as OpenCV's RGB->grey
        rgb = arr[:3].astype(np.float32)
        return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    if channels == 3 and c == 1:
        return np.repeat(arr, 3, axis=0)
    if channels == 3 and c == 4:
        return arr[:3]
    raise SegsuiteError(f"{path}: the model takes {channels} channel(s); this input has {c}")


def centre_crop(array: np.ndarray, max_size: int) -> tuple[np.ndarray, list[int] | None]:
    """``(C, *S)`` cropped to at most ``max_size`` per spatial axis around the centre, and the crop
    ``[start..., size...]`` (None when nothing was cut)."""
    size = array.shape[1:]
    if all(s <= max_size for s in size):
        return array, None
    starts = [max(0, (s - max_size) // 2) for s in size]
    sizes = [min(s, max_size) for s in size]
    region = (slice(None), *[slice(a, a + n) for a, n in zip(starts, sizes)])
    return array[region], starts + sizes


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "class"


def explain_image(predictor: Any, item: Any, index: int, outputs: Mapping[str, Path], *, layer: str | None = None,
                  max_size: int = 1024) -> dict[str, Any]:
    """Seg-Grad-CAM of class ``index`` on one 2D input: writes ``outputs["cam"]`` (heatmap, fixed
    0..1 scale) and ``outputs["overlay"]`` (over the image, predicted region outlined); returns the
    record.

    Inputs larger than ``max_size`` on a side are explained on their centre crop of that size
    (gradients of a whole large scene would not fit in memory); the crop is in the record.
    Nodata pixels (the reader's ``spatial.nodata`` in every band) sit at the normalised mean and
    are outside the region and the map.
    """
    import cv2

    from .data.images import match_bit_depth, require_finite, write_image
    from .infer import pad_to_minimum
    from .visualize import heat_overlay, heatmap

    t0 = time.perf_counter()
    path = getattr(item, "source", None) or ""
    cls = predictor.class_map.names[index]
    arr = fit_channels(np.asarray(item.array), predictor.model.in_channels, path)
    if 0 in arr.shape:
        raise SegsuiteError(f"{path}: image has zero size {tuple(arr.shape[1:])}")
    arr, crop = centre_crop(arr, max_size)
    nodata = getattr(getattr(item, "spatial", None), "nodata", None)
    valid_np = ~np.all(arr == nodata, axis=0) if nodata is not None else np.ones(arr.shape[1:], bool)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr).all(axis=0)
        if nodata is None:  # no nodata to put them in: refused, as everywhere (one line naming the count)
            require_finite(arr, path, channel_axis=0)
        elif not finite.all():  # a domain with nodata: NaN and infinity are nodata too
            valid_np &= finite
            arr = np.where(finite, arr, 0)
    if not valid_np.any():
        raise SegsuiteError(f"{path}: every pixel is nodata; nothing to explain")
    arr = match_bit_depth(arr, predictor.normalization.get("dtype"))  # e.g. 12/16-bit for an 8-bit model
    x = predictor.prepare(arr.astype(np.float32)).to(predictor.device)
    valid = torch.from_numpy(valid_np)[None].to(predictor.device)
    x[:, :, ~valid[0]] = 0.0
    # an image smaller than the network takes is explained padded (border replicated), then cropped back
    x, back = pad_to_minimum(x, predictor.minimum_size)
    if nodata is not None and back is not None:
        valid = pad_to_minimum(valid[:, None].float(), predictor.minimum_size)[0][:, 0] > 0.5
    result = seg_grad_cam(predictor.model, x, index, layer=layer, valid=valid if nodata is not None else None)
    if back is not None:
        result.cam, result.labels = result.cam[(slice(None), *back)], result.labels[(slice(None), *back)]
    cam = result.cam[0].cpu().numpy().astype(np.float32)
    region = (result.labels[0].cpu().numpy() == index) & valid_np
    write_image(outputs["cam"], heatmap(cam, "jet"))
    shown = heat_overlay(arr, cam, "jet")
    if region.any():
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(shown, contours, -1, (255, 255, 255), 1)
    write_image(outputs["overlay"], shown)
    n_valid = int(valid_np.sum())
    record = {
        "input": str(path), "class": cls, "class_index": index,
        "layer": result.layer, "layer_auto": layer is None, "layer_shape": list(result.layer_shape),
        "region": result.region[0],
        "region_note": ("gradient of the class's logits summed over the pixels predicted as the class"
                        if result.region[0] == "predicted" else
                        "the class is predicted nowhere: gradient of its logits summed over the whole image"),
        "predicted_pixels": int(region.sum()), "predicted_fraction": round(float(region.sum()) / n_valid, 5),
        "cam_mass_inside_predicted": (None if result.region[0] == "image" else
                                      _round(result.mass_inside(torch.from_numpy(region)[None])[0])),
        "cam_mean": round(float(cam[valid_np].mean()), 5),
        "cam_empty": bool(cam.max() <= 0),
        "size": list(arr.shape[1:]), "crop": crop,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    if result.normalised_after:
        record["caveat"] = (f"instance normalisation after this layer ({', '.join(result.normalised_after[:3])}) removes "
                            "each channel's spatial mean from the gradients, so their spatial averages (the Grad-CAM "
                            "weights) are close to zero and this map is unreliable; prefer the default layer")
    return record


def describe_explanation(record: Mapping[str, Any]) -> str:
    """The console line for one explained 2D input."""
    if record["region"] == "image":
        where = "predicted nowhere (explained over the whole image)"
    else:
        where = f"predicted on {100 * record['predicted_fraction']:.1f} % of pixels"
    if record["cam_empty"]:
        where += ", the map is empty (no positive evidence at this layer)"
    elif record["cam_mass_inside_predicted"] is not None:
        where += f", {100 * record['cam_mass_inside_predicted']:.0f} % of the map inside"
    crop = record.get("crop")
    return (f"{Path(record['input']).name}: {record['class']} {where}; layer {record['layer']}"
            + (f"; centre crop {crop}" if crop else "") + ("; see the caveat in the JSON" if "caveat" in record else ""))


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 5)
