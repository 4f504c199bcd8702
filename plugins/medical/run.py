"""``segsuite run medical``: label volumes on the input grid plus a JSON volume report per case.

Per case (one at a time, so memory stays bounded in a batch): read the NIfTI, bring it to
the model grid as the model card says (RAS reorientation, resampling to the model's
spacing, CT window or z-score), run the core's 3D sliding window (Gaussian blending,
batched windows, AMP on GPU, CPU stitching on GPU out-of-memory), optionally average
mirrored passes (TTA: 2^3 = 8 network passes per window instead of 1), map the class
probabilities back to the input's own grid, take the argmax, post-process, and write
``{case}_seg.nii.gz`` with the input's exact geometry and ``{case}_seg.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError, SegsuiteError

OVERLAP, FAST_OVERLAP = 0.5, 0.25


@dataclass
class VolumeModel:
    """A loaded medical model: the predictor plus the preprocessing its card records."""

    predictor: Any
    prep: Any

    @classmethod
    def load(cls, checkpoint: Path, device: str = "auto", *, fast: bool = False, tta: bool = False) -> "VolumeModel":
        from segsuite.core.infer import Predictor, SlidingWindow

        from .preprocess import Preprocessing

        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        prep = Preprocessing.from_dict(predictor.normalization, source=str(checkpoint))  # refuses non-volume models
        patch = tuple(predictor.card.patch_size or (96, 96, 96))
        predictor.window = SlidingWindow(patch, overlap=FAST_OVERLAP if fast else OVERLAP, batch_size=2)
        model = cls(predictor, prep)
        if len(patch) != predictor.spatial_dims:
            raise SegsuiteError(f"{checkpoint}: patch size {list(patch)} does not fit a {predictor.spatial_dims}D model")
        if tta and not fast:
            model._check_mirroring()
            predictor.tta = True
        return model

    def predict(self, image: np.ndarray, affine: np.ndarray, *, uncertainty: str | None = None,
                probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Labels ``(X, Y, Z)`` on the input's own voxel grid; with ``probabilities`` also the class
        probabilities ``(C, X, Y, Z)``, with ``uncertainty`` (entropy, tta or mcdropout) a map ``(X, Y, Z)``
        in [0, 1]. Full-resolution probabilities are only built when asked for."""
        from .preprocess import from_model_grid, labels_from_model_grid, to_model_grid

        x, _, grid = to_model_grid(image, affine, self.prep)
        if uncertainty == "tta":
            self._check_mirroring()
        probs, u = self._model_grid(x, uncertainty)
        unc = from_model_grid(u, grid)[0] if u is not None else None
        labels = labels_from_model_grid(probs, grid)
        return labels, (from_model_grid(probs, grid) if probabilities else None), unc

    @property
    def slices(self) -> bool:
        """A 2D model: volumes are segmented axial slice by axial slice."""
        return self.predictor.spatial_dims == 2

    def _model_grid(self, x: Any, uncertainty: str | None) -> tuple[Any, Any]:
        """Probabilities ``(C, *grid)`` and the uncertainty ``(1, *grid)`` (or None) on the model grid."""
        batch = x.permute(3, 0, 1, 2) if self.slices else x[None]  # slices: (Z, C, X, Y)
        if uncertainty is None:
            probs, unc = self.predictor.probabilities(batch, normalized=True), None
        else:
            probs, unc = self.predictor.probabilities_and_uncertainty(batch, uncertainty, normalized=True)
        if self.slices:
            return probs.permute(1, 2, 3, 0), (unc.permute(1, 2, 0)[None] if unc is not None else None)
        return probs[0], unc

    def _check_mirroring(self) -> None:
        want = (0, 1) if self.slices else (0, 1, 2)
        if tuple(sorted(self.prep.mirror_axes)) != want:
            raise SegsuiteError(f"the model was trained with mirroring along axes {list(self.prep.mirror_axes)} only; "
                                "mirroring TTA needs a model trained with mirroring along every axis it sees")


def check_volume(item: Any, in_channels: int) -> np.ndarray:
    """The item's array as float32 after the checks every medical input gets."""
    path, arr = item.source, item.array
    if 0 in arr.shape:
        raise InputFileError(f"{path}: a dimension has size 0 {tuple(arr.shape[1:])}")
    if arr.shape[0] != in_channels:
        raise InputFileError(
            f"{path}: {arr.shape[0]} volume(s) along the 4th dimension but the model takes {in_channels} "
            "channel(s); a 4D file is read as channels (e.g. MRI sequences), so split time series first"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputFileError(f"{path}: {int((~np.isfinite(arr)).sum())} voxels are NaN or infinite")
    return arr.astype(np.float32)


def run_volumes(inputs: list[Path], checkpoint: Path, output: Path | None, *, device: str = "auto",
                keep_largest: bool | None = None, fill_holes: bool | None = None, min_volume: float | None = None,
                probabilities: bool | None = None, tta: bool | None = None, fast: bool | None = None,
                uncertainty: str | None = None, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    from segsuite.core.io import write_json
    from segsuite.core.uncertainty import check_method

    from .io import read_nifti
    from .volumes import postprocess, volume_report, voxel_volume_mm3, write_label_volume, write_map_volume

    check_method(uncertainty)
    log = log or _echo
    model = VolumeModel.load(checkpoint, device, fast=bool(fast), tta=bool(tta))
    names = model.predictor.class_map.names
    single_file = output is not None and len(inputs) == 1 and str(output).lower().endswith((".nii.gz", ".nii"))
    reports, failures = [], []
    for k, path, log in _with_progress(inputs, log):
        t0 = time.perf_counter()
        try:
            item = read_nifti(path)
            image = check_volume(item, model.predictor.model.in_channels)
            labels, probs, unc = model.predict(image, item.spatial.affine_array(), uncertainty=uncertainty,
                                               probabilities=bool(probabilities))
        except InputFileError as exc:
            if len(inputs) == 1:
                raise
            failures.append(str(exc))
            log(f"[{k}/{len(inputs)}] skipped: {exc}")
            continue
        if keep_largest or fill_holes or min_volume:
            labels = postprocess(labels, voxel_volume_mm3(item) / 1000.0, keep_largest=bool(keep_largest),
                                 fill_holes=bool(fill_holes), min_volume_ml=float(min_volume or 0.0))
        case = item.name
        if single_file:
            seg_path, target_dir = Path(output), Path(output).parent
        else:
            target_dir = Path(output) if output is not None else Path("segsuite-run")
            seg_path = target_dir / f"{case}_seg.nii.gz"
        seg = write_label_volume(labels, item, seg_path)
        report = volume_report(labels, item, names)
        files = {"labels": str(seg)}
        if probs is not None:
            files["probabilities"] = str(write_map_volume(probs, item, target_dir / f"{case}_probabilities.nii.gz"))
        if unc is not None:
            files["uncertainty"] = str(write_map_volume(unc, item, target_dir / f"{case}_uncertainty.nii.gz"))
            report["uncertainty"] = {"method": uncertainty, "mean": round(float(unc.mean()), 5),
                                     "mean_in_foreground": round(float(unc[labels > 0].mean()), 5) if (labels > 0).any() else None}
        report.update({"output": str(seg), "files": files, "tta": bool(model.predictor.tta),
                       "seconds": round(time.perf_counter() - t0, 3)})
        write_json(seg.with_name(seg.name.split(".nii")[0] + ".json"), report)
        log(f"[{k}/{len(inputs)}] {path.name} -> {seg.name}: " + ", ".join(
            f"{n} {v['volume_ml']:.1f} mL ({v['components']} part(s))" for n, v in report["classes"].items()))
        reports.append(report)
        del probs, labels, unc
    if failures:
        raise SegsuiteError(f"{len(failures)} of {len(inputs)} input(s) failed (the others were written): {failures[0]}")
    return reports


def explain_volumes(inputs: list[Path], checkpoint: Path, output: Path | None, class_name: str, *, device: str = "auto",
                    layer: str | None = None, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Seg-Grad-CAM for one class on each volume (on the model grid), written as a NIfTI map on the
    input's grid, plus a JSON with the layer used and the share of the map inside the predicted class."""
    import torch

    from segsuite.core.explain import class_index, seg_grad_cam
    from segsuite.core.io import write_json

    from .io import read_nifti
    from .preprocess import from_model_grid, labels_from_model_grid, to_model_grid
    from .volumes import write_map_volume

    log = log or _echo
    model = VolumeModel.load(checkpoint, device)
    cls = class_index(model.predictor.class_map, class_name)
    results = []
    for path in inputs:
        item = read_nifti(path)
        image = check_volume(item, model.predictor.model.in_channels)
        x, _, grid = to_model_grid(image, item.spatial.affine_array(), model.prep)
        batch = x.permute(3, 0, 1, 2) if model.slices else x[None]  # slice mode: one map per axial slice
        result = seg_grad_cam(model.predictor.model, batch.to(model.predictor.device), cls, layer=layer)
        cam, predicted = result.cam.cpu(), result.labels.cpu()
        if model.slices:
            cam, predicted = cam.permute(1, 2, 0)[None], predicted.permute(1, 2, 0)[None]
        back = from_model_grid(cam, grid)[0]
        labels = labels_from_model_grid(torch.nn.functional.one_hot(predicted[0], len(model.predictor.class_map.names))
                                        .movedim(-1, 0).float(), grid)
        target_dir = Path(output) if output is not None else Path("segsuite-explain")
        stem = f"{item.name}_{model.predictor.class_map.names[cls]}_cam"
        out = write_map_volume(back, item, target_dir / f"{stem}.nii.gz")
        inside = float(back[labels == cls].sum() / back.sum()) if back.sum() > 0 else None
        info = {"input": str(path), "class": model.predictor.class_map.names[cls], "layer": result.layer,
                "region": "predicted" if "predicted" in result.region else "image", "cam": str(out), "share_in_predicted_region": inside,
                "predicted_share_of_volume": float((labels == cls).mean())}
        write_json(target_dir / f"{stem}.json", info)
        log(f"{path.name} -> {out.name} (layer {result.layer}; {100 * (inside or 0):.0f}% of the map inside the predicted "
            f"{info['class']})")
        results.append(info)
    return results


def _with_progress(inputs: list[Path], log: Callable[[str], None]):
    """``(k, path, log)`` per input; in a terminal, a batch also gets a progress bar (on stderr),
    and the per-case lines are printed above it."""
    import sys

    if len(inputs) < 2 or not sys.stderr.isatty():
        for k, path in enumerate(inputs, 1):
            yield k, path, log
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("segmenting volumes", total=len(inputs))
        for k, path in enumerate(inputs, 1):
            bar.update(task, description=path.name)
            yield k, path, lambda message: bar.console.print(message, markup=False, highlight=False)
            bar.advance(task)


def _echo(message: str) -> None:
    import typer

    typer.echo(message)
