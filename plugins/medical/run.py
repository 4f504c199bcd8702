"""``segsuite run medical``: label volumes on the input grid plus a JSON volume report per case.

Cases are processed one at a time (RAM stays bounded in a batch). The network runs on the
input's own voxel grid with the core's 3D sliding window (Gaussian blending, batched
windows, AMP and CPU stitching on GPU OOM). Reorientation to RAS and resampling to the
model's spacing (with their exact inverse) are not done yet: a model trained on another
spacing or orientation should be run on data prepared the same way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError, SegsuiteError


def run_volumes(inputs: list[Path], checkpoint: Path, output: Path | None, *, device: str = "auto",
                keep_largest: bool | None = None, fill_holes: bool | None = None,
                min_volume: float | None = None) -> list[dict[str, Any]]:
    import typer

    from segsuite.core.infer import Predictor, SlidingWindow
    from segsuite.core.io import write_json

    from .io import read_nifti
    from .volumes import postprocess, volume_report, voxel_volume_mm3, write_label_volume

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    if predictor.spatial_dims != 3:
        raise SegsuiteError(f"{checkpoint}: a {predictor.spatial_dims}D model; medical volumes need a 3D model")
    patch = tuple(predictor.card.patch_size or (96, 96, 96))
    predictor.window = SlidingWindow(patch, overlap=0.5, batch_size=2)
    names = predictor.class_map.names
    reports = []
    for path in inputs:
        t0 = time.perf_counter()
        item = read_nifti(path)
        arr = item.array
        if 0 in arr.shape:
            raise InputFileError(f"{path}: a dimension has size 0 {tuple(arr.shape[1:])}")
        if arr.shape[0] != predictor.model.in_channels:
            raise InputFileError(
                f"{path}: {arr.shape[0]} volume(s) along the 4th dimension but the model takes {predictor.model.in_channels} "
                "channel(s); a 4D file is read as channels (e.g. MRI sequences), so split time series first"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise InputFileError(f"{path}: {int((~np.isfinite(arr)).sum())} voxels are NaN or infinite")
        labels = predictor.predict(arr.astype(np.float32))[0].cpu().numpy()
        if keep_largest or fill_holes or min_volume:
            labels = postprocess(labels, voxel_volume_mm3(item) / 1000.0, keep_largest=bool(keep_largest),
                                 fill_holes=bool(fill_holes), min_volume_ml=float(min_volume or 0.0))
        case = item.name
        target_dir = Path(output) if output is not None else path.parent
        seg = write_label_volume(labels, item, target_dir / f"{case}_seg.nii.gz")
        report = volume_report(labels, item, names)
        report.update({"output": str(seg), "seconds": round(time.perf_counter() - t0, 3)})
        write_json(target_dir / f"{case}_seg.json", report)
        typer.echo(f"{path.name} -> {seg.name}: " + ", ".join(
            f"{n} {v['volume_ml']:.1f} mL ({v['components']} part(s))" for n, v in report["classes"].items()))
        reports.append(report)
    return reports
