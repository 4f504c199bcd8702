"""Driving real-time figures: model latency/FPS of the default model, PyTorch eager vs ONNX Runtime,
plus end-to-end FPS of the video pipeline on the sample drive.

    .venv/bin/python benchmarks/bench_driving.py [--sizes 512x1024,1024x2048] [--runs 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x1024,1024x2048")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default=str(ROOT / "sample_data" / "driving" / "model.safetensors"))
    args = ap.parse_args()

    from segsuite.core.bench import measure_latency
    from segsuite.core.export import export_model
    from segsuite.core.infer import Predictor
    from segsuite.plugins.driving.scenes import run_video

    work = Path(tempfile.mkdtemp(prefix="segsuite-bench-drv-"))
    onnx_path = work / "model.onnx"
    export_model(args.model, "onnx", onnx_path)
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        eager = measure_latency(args.model, (h, w), runs=args.runs, warmup=2)
        ort = measure_latency(str(onnx_path), (h, w), runs=args.runs, warmup=2)
        print(f"{h}x{w} batch 1 fp32 {eager['device_name']}: PyTorch eager {eager['images_per_second']:.2f} FPS "
              f"({eager['latency_ms_median']:.0f} ms), ONNX Runtime {ort['images_per_second']:.2f} FPS "
              f"({ort['latency_ms_median']:.0f} ms), ONNX/eager speed-up {ort['images_per_second'] / eager['images_per_second']:.2f}")
    video = ROOT / "sample_data" / "driving" / "drive.mp4"
    for label, model in (("eager", args.model), ("onnx", str(onnx_path))):
        r = run_video(Predictor.from_checkpoint(model, device="cpu"), video, work / f"{label}_overlay.mp4")
        print(f"video end to end ({label}), {r['size'][0]}x{r['size'][1]}, {r['frames']} frames: {r['fps_achieved']:.1f} FPS "
              f"(decode, infer, overlay, encode overlapped)")


if __name__ == "__main__":
    main()
