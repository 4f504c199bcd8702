"""Model-only latency: warm-up, synchronised timing, and every number labelled with its conditions."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import SegsuiteError


def _model(spec: str, device: torch.device, channels: int, classes: int, threads: int | None = None) -> tuple[Any, str]:
    if spec.lower().endswith(".onnx"):
        from .export import OnnxSegmentationModel

        if device.type != "cpu":
            raise SegsuiteError("an .onnx model runs with ONNX Runtime on the CPU here; use --device cpu")
        return OnnxSegmentationModel(spec, threads=threads), "onnxruntime"
    if Path(spec).suffix == ".safetensors" or Path(spec).is_file():
        from .checkpoint import load_checkpoint

        return load_checkpoint(spec).build_model(), "torch"
    from .models import build_model

    return build_model(spec, channels, classes), "torch"


def measure_latency(spec: str, size: tuple[int, int], *, batch: int = 1, device: str = "cpu",
                    precision: Literal["fp32", "fp16", "bf16"] = "fp32", warmup: int = 3, runs: int = 10,
                    channels: int = 3, classes: int = 19, onnx_threads: int | None = None) -> dict[str, Any]:
    """Median and p90 latency of one model at ``size``. ``onnx_threads`` sizes ONNX Runtime's
    intra-op pool (default: one thread per core); PyTorch's comes from ``torch.set_num_threads``."""
    from .trainer import resolve_device

    dev = resolve_device(device)
    model, runtime = _model(spec, dev, channels, classes, onnx_threads)
    model = model.to(dev).eval()
    from .infer import Predictor, minimum_input_size

    low = minimum_input_size(model)
    if any(s < m for s, m in zip(size, low)):
        raise SegsuiteError(f"--size {'x'.join(map(str, size))}: {getattr(model, 'arch', spec)} takes inputs of at "
                            f"least {'x'.join(map(str, low))} px (segsuite run pads smaller images; a benchmark "
                            "measures what it is given)")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        raise SegsuiteError(f"--precision {precision!r}: choose fp32, fp16 or bf16")
    if dtype is not torch.float32 and (dev.type != "cuda" or runtime != "torch"):
        raise SegsuiteError(f"--precision {precision} needs a CUDA device and the torch runtime (fp32 on the CPU)")
    x = torch.randn(batch, model.in_channels, *size, device=dev)
    # the network as segsuite runs it (channels-last on a CPU where it helps, see core.infer); the
    # layout's first-call check happens during the warm-up
    predictor = Predictor(model, device=str(dev), amp="off")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = []
    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not torch.float32):
        for i in range(warmup + runs):
            sync()
            t0 = time.perf_counter()
            predictor.run_network(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "model": getattr(model, "arch", spec), "runtime": runtime, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "precision": precision, "size": list(size), "batch": batch, "runs": runs, "warmup": warmup,
        "layout": "channels_last" if predictor.memory_format is not None else "contiguous",
        "latency_ms_median": 1000 * median, "latency_ms_p90": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "images_per_second": batch / median, "torch": torch.__version__,
    }
