"""Export to ONNX and TorchScript, checked numerically, and an ONNX Runtime model for inference.

What is exported is the network itself with dynamic batch, height and width; the
pad-to-stride and crop-back that makes any input size work stays in segsuite's runtime
(:class:`OnnxSegmentationModel`, or :class:`~segsuite.core.models.base.SegmentationModel` for
TorchScript), because shape arithmetic in Python is frozen into constants by tracing. The
model card travels inside the file (ONNX metadata ``segsuite.card``; a TorchScript extra file),
so an exported model runs with the same class map and normalisation as its checkpoint.

Every export is verified before it is kept: logits on two random inputs of different sizes
must match PyTorch within ``max_abs_diff`` (1e-3) with argmax agreement of at least 99.9 %;
otherwise the file is not written and the error says by how much it missed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .errors import InputFileError, SegsuiteError
from .io import atomic_path

MAX_ABS_DIFF = 1e-3
MIN_ARGMAX_AGREEMENT = 0.999


class _Logits(nn.Module):
    """The bare network, returning a plain logits tensor (torchvision returns a dict)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, dict):
            return out["out"]
        if isinstance(out, (tuple, list)):
            return out[0]
        return out


def _pad(x: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, ...]]:
    size = x.shape[2:]
    pads = [(0, 0), (0, 0)] + [(0, (-s) % stride) for s in size]
    return (np.pad(x, pads, mode="edge") if any(p[1] for p in pads) else x), tuple(size)


class OnnxSegmentationModel(nn.Module):
    """An exported ONNX model behind the same interface as a SegmentationModel (CPU, ONNX Runtime)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputFileError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:160]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "segsuite.card" not in meta:
            raise InputFileError(f"{path}: an ONNX model without a segsuite model card; export it with `segsuite export`")
        from .checkpoint import ModelCard

        self.card = ModelCard.from_json(meta["segsuite.card"], str(path))
        self.stride = int(meta.get("segsuite.stride", "1"))
        m = self.card.model
        self.arch, self.in_channels, self.num_classes = m["arch"], m["in_channels"], m["num_classes"]
        self.spatial_dims = m.get("spatial_dims", 2)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr, size = _pad(x.detach().float().cpu().numpy(), self.stride)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(arr)})[0]
        out = out[(..., *[slice(0, s) for s in size])]
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)


def _compare(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    diff = float((reference - candidate).abs().max())
    agree = float((reference.argmax(1) == candidate.argmax(1)).float().mean())
    return {"max_abs_diff": diff, "argmax_agreement": agree}


def export_model(checkpoint: str | Path, fmt: Literal["onnx", "torchscript"] = "onnx", output: str | Path | None = None,
                 *, opset: int = 17, check_sizes: tuple[tuple[int, int], ...] | None = None) -> dict[str, Any]:
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model().eval()
    if model.spatial_dims != 2:
        raise SegsuiteError(f"{checkpoint}: only 2D models are exported (this one is {model.spatial_dims}D)")
    stride = model.stride
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    out = Path(output) if output is not None else Path(checkpoint).with_suffix(suffix)
    net = _Logits(model.net).eval()
    c = model.in_channels
    if check_sizes is None:
        base = max(stride, 64)
        check_sizes = ((base * 2, base * 3), (base * 3, base * 2 + stride))
    example = torch.randn(1, c, *check_sizes[0])
    card_json = ckpt.card.to_json()
    report: dict[str, Any] = {"format": fmt, "output": str(out), "stride": stride, "checks": []}
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            import warnings

            import onnx

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
                torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["image"],
                                  output_names=["logits"],
                                  dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                "logits": {0: "batch", 2: "height", 3: "width"}})
            proto = onnx.load(str(tmp))
            for key, value in (("segsuite.card", card_json), ("segsuite.stride", str(stride))):
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(proto, str(tmp))
            candidate = OnnxSegmentationModel(tmp)
        elif fmt == "torchscript":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still what C++/mobile load
                traced = torch.jit.trace(net, example, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={"segsuite_card.json": card_json, "segsuite_stride": str(stride)})
                loaded = torch.jit.load(str(tmp))

            def candidate(x: torch.Tensor) -> torch.Tensor:  # same padding as SegmentationModel
                wrapper = type(model)(loaded, arch=model.arch, in_channels=c, num_classes=model.num_classes,
                                      spatial_dims=2, stride=stride, encoder_prefix=None)
                return wrapper(x)
        else:
            raise SegsuiteError(f"unknown export format {fmt!r}; use onnx or torchscript")
        for h, w in check_sizes:
            x = torch.randn(1, c, h, w)
            with torch.no_grad():
                ref = model(x)
                got = candidate(x)
            result = {"size": [h, w], **_compare(ref, got)}
            report["checks"].append(result)
            if result["max_abs_diff"] > MAX_ABS_DIFF or result["argmax_agreement"] < MIN_ARGMAX_AGREEMENT:
                raise SegsuiteError(
                    f"{out}: exported model disagrees with PyTorch at {h}x{w} (max abs diff {result['max_abs_diff']:.2e}, "
                    f"argmax agreement {100 * result['argmax_agreement']:.3f} %); not written"
                )
    report["max_abs_diff"] = max(r["max_abs_diff"] for r in report["checks"])
    report["argmax_agreement"] = min(r["argmax_agreement"] for r in report["checks"])
    return report
