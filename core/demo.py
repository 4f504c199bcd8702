"""The end-to-end main job on generated data: label -> split -> train -> evaluate -> run.

Until the domain plugins ship their samples and default models, the demo runs the
generic 2D workflow on the committed synthetic generator (coloured shapes on texture), so
every step a user will take is exercised for real and its outputs land in one folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io import write_json


def run_demo(output: str | Path, *, epochs: int = 6, images: int = 64, seed: int = 0, device: str = "cpu",
             log: Callable[[str], None] = print) -> dict[str, Any]:
    from . import tasks
    from .data.datasets import scan_pairs, write_manifest
    from .data.split import split_pairs
    from .data.synthetic import SHAPES, make_shapes_dataset
    from .trainer import TrainConfig

    out = Path(output)
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    log(f"1/5 generating {images} labelled images (seed {seed})")
    data = make_shapes_dataset(out / "data", n=images, seed=seed)
    steps["generate"] = time.perf_counter() - t0

    log("2/5 partitioning into train/val/test manifests (70/15/15)")
    parts = split_pairs(scan_pairs(data), (0.7, 0.15, 0.15), seed=seed)
    manifests = {name: write_manifest(out / "splits" / f"{name}.csv", items) for name, items in parts.items()}
    steps["split"] = time.perf_counter() - t0 - sum(steps.values())

    log(f"3/5 training a U-Net (ResNet-18 encoder) for {epochs} epochs on {device}")
    cfg = TrainConfig(model="unet", model_options={"encoder": "resnet18"}, epochs=epochs, batch_size=8, lr=2e-3,
                      device=device, seed=seed, tensorboard=False, warmup_epochs=0.5)
    fit = tasks.train(manifests["train"], SHAPES, out / "run", cfg, val=manifests["val"], log=log)
    steps["train"] = time.perf_counter() - t0 - sum(steps.values())

    log("4/5 evaluating the best checkpoint on the held-out test split")
    metrics = tasks.evaluate(fit.best_checkpoint, manifests["test"], out / "evaluation", device=device)
    steps["evaluate"] = time.perf_counter() - t0 - sum(steps.values())

    log("5/5 segmenting the test images (labels, colour labels, overlays)")
    test_images = [p.image for p in parts["test"]]
    tasks.predict_images(fit.best_checkpoint, test_images, out / "predictions", device=device, log=lambda _m: None)
    steps["run"] = time.perf_counter() - t0 - sum(steps.values())

    summary = {
        "output": str(out),
        "samples": {k: len(v) for k, v in parts.items()},
        "checkpoint": str(fit.best_checkpoint),
        "epochs": fit.epochs_run,
        "history": fit.history,
        "test_metrics": {
            "global_accuracy": metrics.global_accuracy, "mean_iou": metrics.mean_iou,
            "mean_dice": metrics.mean_dice, "mean_bf_score": metrics.mean_bf,
            "iou": {n: float(v) for n, v in zip(SHAPES.names, metrics.iou)},
        },
        "seconds": {k: round(v, 2) for k, v in steps.items()},
        "files": {
            "metrics": str(out / "evaluation" / "metrics.json"),
            "confusion_matrix": str(out / "evaluation" / "confusion.png"),
            "predictions": str(out / "predictions"),
            "training_log": str(out / "run" / "log.csv"),
        },
    }
    write_json(out / "summary.json", summary)
    summary["table"] = metrics.table()
    return summary
