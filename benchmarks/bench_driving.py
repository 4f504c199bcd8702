"""Driving real-time figures: model-only FPS, parameters and GFLOPs of the real-time candidates,
PyTorch eager vs ONNX Runtime, and end-to-end FPS of the video pipeline against model-only FPS.

    .venv/bin/python benchmarks/bench_driving.py [--sizes 512x1024,1024x2048] [--runs 3] [--threads N] [--quick]

Models: the shipped default (``--model``), DDRNet-23-slim and its half-width variant, LR-ASPP
MobileNetV3-Large and the previous default (MONAI residual U-Net 16-32-64-128). Speed does not
depend on the weights, so the models other than the default are built untrained. Every model is
exported to ONNX with segsuite's verified exporter and timed by ``segsuite.core.bench`` (the code
behind ``segsuite bench``): batch 1, fp32, median of ``--runs`` after a warm-up.

GFLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add,
convolutions and matrix products only); papers' "GFLOPs" for these networks are multiply-adds,
so the GMACs column is the one to compare with them (DDRNet-23-slim: 36.3 at 1024x2048).

The machine (CPU model, cores, torch and ONNX Runtime threads), the load average before and
after and the CPU share other processes took are printed (``benchmarks/conditions.py``): on a
shared machine the figures are only as good as that. ``--threads``
gives PyTorch and ONNX Runtime the same number of threads; on a machine whose cores are busy with
other work, one thread each measures far more steadily than one per core (threads that wait for
a core that is not there slow everything down). With a CUDA
GPU, fp16 and bf16 eager figures are added with the GPU's name.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_DEFAULT = ("resunet", {"channels": [16, 32, 64, 128], "num_res_units": 1})
CANDIDATES = (
    ("DDRNet-23-slim", "ddrnet", {"planes": 32}),
    ("DDRNet-23-slim x0.5", "ddrnet", {"planes": 16}),
    ("LR-ASPP MobileNetV3-L", "lraspp_mobilenet_v3", {}),
    ("ResUNet 16-128 (previous default)", *PREVIOUS_DEFAULT),
)


def checkpoint_of(arch: str, options: dict[str, Any], path: Path) -> Path:
    """An untrained model of ``arch`` saved as a segsuite checkpoint (what the exporter reads)."""
    from segsuite.core.checkpoint import ModelCard, save_checkpoint
    from segsuite.core.models import build_model
    from segsuite.plugins.driving.classes import CITYSCAPES

    torch.manual_seed(0)
    model = build_model(arch, 3, CITYSCAPES.num_classes, **options).eval()
    card = ModelCard(model=model.card(), class_map=CITYSCAPES.to_dict(), domain="driving",
                     normalization={"kind": "zscore", "mean": [120.0] * 3, "std": [60.0] * 3})
    return save_checkpoint(path, model, card)


def count(checkpoint: Path, size: tuple[int, int]) -> tuple[float, float]:
    """(parameters in millions, GFLOPs at ``size``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from segsuite.core.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).build_model().eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, *size))
    return params, counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x1024,1024x2048")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default=str(ROOT / "sample_data" / "driving" / "model.safetensors"),
                    help="the default driving checkpoint (its video figures are measured too)")
    ap.add_argument("--threads", type=int, default=None, help="threads for PyTorch and ONNX Runtime (default: their own)")
    ap.add_argument("--quick", action="store_true", help="one small size, one run: checks the script, not the machine")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.runs = "128x256", 1
    if args.threads:
        torch.set_num_threads(args.threads)

    import onnxruntime
    from conditions import Conditions

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    with Conditions(), tempfile.TemporaryDirectory(prefix="segsuite-bench-drv-") as work:
        print(f"onnxruntime {onnxruntime.__version__} with {args.threads or 'one per core'} threads")
        measure(args, sizes, Path(work))


def measure(args: argparse.Namespace, sizes: list[tuple[int, ...]], work: Path) -> None:
    from segsuite.core.bench import measure_latency
    from segsuite.core.checkpoint import read_card
    from segsuite.core.export import export_model

    default_card = read_card(args.model).model
    shown = ", ".join(f"{k}={v}" for k, v in default_card.get("options", {}).items())
    default_label = f"shipped default: {default_card['arch']} ({shown})"
    models: list[tuple[str, Path]] = [(default_label, Path(args.model))]
    for label, arch, options in CANDIDATES:
        if arch == default_card["arch"] and options == {k: default_card.get("options", {}).get(k) for k in options}:
            continue  # the default itself, measured above
        models.append((label, checkpoint_of(arch, options, work / f"{arch}_{len(models)}.safetensors")))

    header = "| Model | Params (M) |" + "".join(f" GMACs {h}x{w} | eager FPS {h}x{w} | ONNX RT FPS {h}x{w} |" for h, w in sizes)
    print("\nbatch 1, fp32, CPU; FPS = 1 / median latency of", args.runs, "runs after 2 warm-up runs")
    print(header)
    print("|---" * (2 + 3 * len(sizes)) + "|")
    onnx_of: dict[str, Path] = {}
    for label, ckpt in models:
        onnx = work / f"{ckpt.stem}.onnx"
        report = export_model(ckpt, "onnx", onnx)
        assert report["max_abs_diff"] <= 1e-3  # export_model refuses otherwise; kept as a reminder
        onnx_of[label] = onnx
        cells = []
        params = 0.0
        for h, w in sizes:
            params, gflops = count(ckpt, (h, w))
            eager = measure_latency(str(ckpt), (h, w), runs=args.runs, warmup=2)
            ort = measure_latency(str(onnx), (h, w), runs=args.runs, warmup=2, onnx_threads=args.threads)
            cells.append(f" {gflops / 2:.2f} | {eager['images_per_second']:.2f} | {ort['images_per_second']:.2f} |")
        print(f"| {label} | {params:.2f} |" + "".join(cells), flush=True)

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        print(f"\nGPU {name}, batch 1, eager, FPS = 1 / median latency")
        for label, ckpt in models:
            figures = []
            for h, w in sizes:
                for precision in ("fp32", "fp16", "bf16"):
                    r = measure_latency(str(ckpt), (h, w), device="cuda", precision=precision, runs=max(args.runs, 20), warmup=5)
                    figures.append(f"{h}x{w} {precision} {r['images_per_second']:.1f}")
            print(f"{label}: " + ", ".join(figures), flush=True)
    else:
        print("\nno CUDA GPU here: GPU figures not measured")

    video_figures(Path(args.model), onnx_of[default_label], work, quick=args.quick, threads=args.threads)


def video_figures(model: Path, onnx: Path, work: Path, quick: bool, threads: int | None) -> None:
    """End-to-end video FPS (decode, infer, overlay, encode in three threads) against model-only FPS
    at the video's size, for the shipped sample drive and a generated 512x1024 one."""
    from segsuite.core.bench import measure_latency
    from segsuite.core.export import OnnxSegmentationModel
    from segsuite.core.infer import Predictor
    from segsuite.plugins.driving.scenes import run_video
    from segsuite.plugins.driving.synthetic import make_video

    videos = [ROOT / "sample_data" / "driving" / "drive.mp4"]
    if not quick:
        videos.append(make_video(work / "drive_512x1024.mp4", frames=20, size=(512, 1024), seed=8))
    print("\nvideo, default model, batch 1, fp32, CPU:")
    print("| Video | Runtime | End to end FPS | Model-only FPS | End to end / model-only |")
    print("|---|---|---|---|---|")
    for video in videos:
        for runtime, spec in (("eager", model), ("ONNX RT", onnx)):
            if spec.suffix == ".onnx":  # what Predictor.from_checkpoint builds, with the thread count
                session = OnnxSegmentationModel(spec, threads=threads)
                predictor = Predictor(session, normalization=session.card.normalization, device="cpu",
                                      class_map=session.card.classes)
            else:
                predictor = Predictor.from_checkpoint(spec, device="cpu")
            r = run_video(predictor, video, work / f"{video.stem}_{runtime[0]}.mp4")
            h, w = r["size"]
            bare = measure_latency(str(spec), (h, w), runs=10, warmup=2, onnx_threads=threads)["images_per_second"]
            print(f"| {video.name} {h}x{w}, {r['frames']} frames | {runtime} | {r['fps_achieved']:.1f} | {bare:.1f} | "
                  f"{r['fps_achieved'] / bare:.2f} |", flush=True)


if __name__ == "__main__":
    main()
