"""``segsuite bench``: latency and throughput, always with device, precision, size and batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import require_path


def bench(
    model: Annotated[str, typer.Option(help="Checkpoint (.safetensors), ONNX export (.onnx) or architecture name")] = "lraspp_mobilenet_v3",
    size: Annotated[str, typer.Option(help="Input size HxW")] = "512x1024",
    batch: Annotated[int, typer.Option(help="Batch size")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32, or fp16/bf16 on a CUDA device")] = "fp32",
    runs: Annotated[int, typer.Option(help="Timed runs (after warm-up)")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs")] = 3,
    channels: Annotated[int, typer.Option(help="Input channels (architecture names only)")] = 3,
    classes: Annotated[int, typer.Option(help="Classes (architecture names only)")] = 19,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    video: Annotated[Optional[Path], typer.Option(help="Also measure end-to-end FPS on this video")] = None,
) -> None:
    """Measure model-only latency (warm-up, synchronised, median and p90) and print it with the device,
    runtime, precision, resolution and batch size it was measured with."""
    from segsuite.core.bench import measure_latency
    from segsuite.core.errors import SegsuiteError

    h, w = parse_size(size)
    if runs < 1 or batch < 1 or warmup < 0:
        raise SegsuiteError("--runs and --batch must be at least 1, --warmup at least 0")
    if video is not None:
        _video_fps(model, video, device)
        return
    r = measure_latency(model, (h, w), batch=batch, device=device, precision=precision, warmup=warmup, runs=runs,
                        channels=channels, classes=classes)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"{r['model']} | {r['runtime']} | {r['device_name']} | {r['precision']} | {h}x{w} | batch {batch}: "
               f"median {r['latency_ms_median']:.1f} ms, p90 {r['latency_ms_p90']:.1f} ms, "
               f"{r['images_per_second']:.2f} images/s ({runs} runs after {warmup} warm-up)")


def parse_size(size: str) -> tuple[int, int]:
    """``HxW`` as two positive whole numbers; a one-line error otherwise."""
    import re

    from segsuite.core.errors import SegsuiteError

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
    if match is None:
        raise SegsuiteError(f"--size {size!r} must look like 512x1024 (height x width in pixels)")
    h, w = int(match.group(1)), int(match.group(2))
    if h < 1 or w < 1 or h * w > 1 << 30:
        raise SegsuiteError(f"--size {size}: height and width must be at least 1 and the image at most 2^30 pixels "
                            "(what OpenCV decodes)")
    return h, w


def _video_fps(model: str, video: Path, device: str) -> None:
    """End-to-end FPS of the driving video pipeline (decode, infer, overlay, encode) on a real file."""
    import tempfile

    from segsuite.core.errors import SegsuiteError
    from segsuite.core.infer import Predictor
    from segsuite.plugins.driving.scenes import run_video

    require_path(video, "video (--video)", kind="file")
    if not Path(model).is_file():
        raise SegsuiteError("--video needs --model CKPT (a checkpoint or .onnx export), not an architecture name")
    predictor = Predictor.from_checkpoint(model, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_video(predictor, video, Path(tmp))
    runtime = "onnxruntime" if str(model).endswith(".onnx") else "torch"
    typer.echo(f"{predictor.model.arch} | {runtime} | {predictor.device} | fp32 | {r['size'][0]}x{r['size'][1]} | batch 1 | "
               f"video end to end: {r['fps_achieved']:.2f} FPS over {r['frames']} frames (decode, infer, overlay, encode)")
