"""Import a pretrained network from a local file and adapt it.

The file may be a plain state dict saved by torchvision, timm or
segmentation-models-pytorch (``.pth``/``.pt``, loaded with ``weights_only=True``), a
``.safetensors`` file, or a segsuite checkpoint. Keys rarely line up one to one (a
torchvision ResNet's ``conv1.weight`` is ``net.encoder.conv1.weight`` inside an smp U-Net),
so the loader searches for the prefix substitution that matches the most tensors, then
sorts every model tensor into *loaded* (same shape), *adapted* (first convolution with
another channel count) or *new* (head with another class count, or absent from the file).
Nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputFileError
from .base import adapt_conv_weight, first_conv


@dataclass
class PretrainedReport:
    source: str
    mapping: tuple[str, str] = ("", "")  # (prefix in file, prefix in model)
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        file_p, model_p = self.mapping
        how = f" (file '{file_p}*' -> model '{model_p}*')" if any(self.mapping) else ""
        return (f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.adapted)} adapted, "
                f"{len(self.new)} new, {len(self.unused)} unused in file{how}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "mapping": list(self.mapping), "loaded": self.loaded,
                "adapted": self.adapted, "new": self.new, "unused": self.unused}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type, not exported everywhere
            raise InputFileError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for foreign objects, RuntimeError/struct.error for junk
        raise InputFileError(f"{path}: refused to load; {why_not_loaded(exc)}") from None
    for key in ("state_dict", "model", "model_state", "weights"):  # common wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputFileError(f"{path}: does not contain a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DDP-saved files


def why_not_loaded(exc: BaseException) -> str:
    """One complete sentence for a failed ``torch.load(weights_only=True)``.

    torch's message is a page of advice (how to turn the safety off) whose first line stops at
    "you have two options,"; what matters is the object it refused, named further down.
    """
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if refused:
        return (f"it holds a pickled Python object ({refused.group(1)}), and only plain tensors are accepted "
                "because unpickling can run code; save the weights as a state dict of tensors or as safetensors")
    if "weights only load failed" in str(exc).lower():
        return ("it holds pickled Python objects, and only plain tensors are accepted because unpickling can run "
                "code; save the weights as a state dict of tensors or as safetensors")
    return f"not a PyTorch weights file ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"


def _prefixes(keys: list[str], depth: int) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        for i in range(1, min(depth, len(parts) - 1) + 1):
            out.add(".".join(parts[:i]) + ".")
    return out


def _best_mapping(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> tuple[str, str]:
    best, best_score = ("", ""), -1
    for ps in _prefixes(list(src), 2):
        for pm in _prefixes(list(dst), 3):
            score = 0
            for k, v in src.items():
                if k.startswith(ps):
                    target = pm + k[len(ps):]
                    if target in dst:
                        score += 2 if dst[target].shape == v.shape else 1
            if score > best_score:
                best, best_score = (ps, pm), score
    return best


def load_pretrained(model: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy matching tensors from ``path`` into ``model`` in place; report what happened."""
    path = Path(path)
    src = read_state_dict(path)  # a segsuite checkpoint is a safetensors file too
    dst = model.state_dict()
    ps, pm = _best_mapping(src, dst)
    report = PretrainedReport(source=str(path), mapping=(ps, pm))
    first_name = first_conv(model)[0] + ".weight"
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for dkey, dval in dst.items():
        skey = ps + dkey[len(pm):] if dkey.startswith(pm) else None
        sval = src.get(skey) if skey is not None else None
        if sval is None:
            report.new.append(dkey)
            continue
        used.add(skey)  # type: ignore[arg-type]
        if sval.shape == dval.shape:
            new_state[dkey] = sval.to(dval.dtype)
            report.loaded.append(dkey)
        elif dkey == first_name and sval.ndim == dval.ndim and sval.shape[0] == dval.shape[0] and sval.shape[2:] == dval.shape[2:]:
            new_state[dkey] = adapt_conv_weight(sval.to(dval.dtype), dval.shape[1])
            report.adapted.append(f"{dkey} ({sval.shape[1]} -> {dval.shape[1]} input channels)")
        else:
            report.new.append(f"{dkey} (shape {tuple(sval.shape)} in file, {tuple(dval.shape)} in model)")
    report.unused = sorted(set(src) - used)
    if not report.loaded and not report.adapted:
        raise InputFileError(f"{path}: no tensor matches this model ({type(model).__name__}); wrong architecture or encoder?")
    model.load_state_dict(new_state, strict=False)
    return report
