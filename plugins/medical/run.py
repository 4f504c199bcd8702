"""One medical case through the model: the per-case work of ``segsuite run medical`` and ``explain medical``.

Per case (one at a time, so memory stays bounded in a batch; the job executor runs the
batch): read the NIfTI or DICOM series, bring it to the model grid as the model card says (RAS
reorientation, resampling to the model's spacing, CT window or z-score), run the core's 3D
sliding window (Gaussian blending, batched windows, AMP on GPU, CPU stitching on GPU
out-of-memory), optionally average mirrored passes (TTA: 2^3 = 8 network passes per window
instead of 1), map the class probabilities back to the input's own grid, take the argmax,
post-process, and write the label volume with the input's exact geometry (NIfTI, and/or a DICOM
SEG whose frames are the source series' slices).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
        """``checkpoint`` with the preprocessing its card records (a 2D or 3D medical model). ``fast``
        overlaps the windows by a quarter instead of a half and leaves TTA off; ``tta`` averages the
        mirrored passes (refused for a model not trained mirrored along every axis)."""
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
            model.check_mirroring()
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
            self.check_mirroring()
        probs, u = self._model_grid(x, uncertainty)
        unc = from_model_grid(u, grid)[0] if u is not None else None
        labels = labels_from_model_grid(probs, grid)
        return labels, (from_model_grid(probs, grid) if probabilities else None), unc

    @property
    def ct_window(self) -> list[float] | None:
        """The Hounsfield window the model normalises with (``None``: MRI z-score or no normalisation);
        the report shows the slices in it."""
        return [float(w) for w in self.prep.window] if self.prep.intensity == "ct_window" else None

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

    def check_mirroring(self) -> None:
        """A one-line error unless the model was trained mirrored along every axis it sees (flip TTA needs that)."""
        want = (0, 1) if self.slices else (0, 1, 2)
        if tuple(sorted(self.prep.mirror_axes)) != want:
            raise SegsuiteError(f"the model was trained with mirroring along axes {list(self.prep.mirror_axes)} only; "
                                "mirroring TTA needs a model trained with mirroring along every axis it sees")


def check_volume(item: Any, in_channels: int, prep: Any = None) -> np.ndarray:
    """The item's array as float32 after the checks every medical input gets: the channel count,
    finite values (after the cast: a huge scale factor overflows float32) and intensities that vary
    (:func:`check_intensities`)."""
    path, arr = item.source, item.array
    if arr.shape[0] != in_channels:
        raise InputFileError(
            f"{path}: {arr.shape[0]} volume(s) along the 4th dimension but the model takes {in_channels} "
            "channel(s); a 4D file is read as channels (e.g. MRI sequences), so split time series first"
        )
    image = arr.astype(np.float32)
    finite = np.isfinite(image)
    if not finite.all():
        raise InputFileError(f"{path}: {int(finite.size - np.count_nonzero(finite))} voxels are NaN or infinite; "
                             "segsuite does not guess values for them: fill them (e.g. with the background value) "
                             "and run it again")
    check_intensities(image, path, prep)
    return image


def check_intensities(image: np.ndarray, path: Any, prep: Any = None) -> None:
    """Refuse a volume that carries no image, in every channel: one constant value (an all-zero
    file, a blank export), or, for a CT-window model, every voxel on the same side of the window.

    A network given a blank input still answers: it paints whatever its biases favour (an
    all-zero CT came out as 819 mL of lesion). Those volumes would be reported as organs, so
    the policy is to refuse the input with one line, never to run it and report nothing
    (an empty result is indistinguishable from "no organ here"), and never to report what
    the bias painted.
    """
    for c in range(image.shape[0]):
        lo, hi = float(image[c].min()), float(image[c].max())
        channel = f" in channel {c}" if image.shape[0] > 1 else ""
        if lo == hi:
            raise InputFileError(f"{path}: no intensity variation{channel} (every voxel is {lo:g}); there is "
                                 "nothing to segment, so no volumes are reported")
        if prep is not None and prep.intensity == "ct_window":
            low, high = prep.window
            if hi <= low or lo >= high:
                side = "below" if hi <= low else "above"
                raise InputFileError(f"{path}: no intensity variation{channel} within the model's CT window "
                                     f"[{low:g}, {high:g}] HU (every voxel is {side} it: {lo:g} to {hi:g}); "
                                     "is this a CT in Hounsfield units? nothing to segment, so no volumes are reported")


def run_memory(nifti: Any, model: VolumeModel, options: Mapping[str, Any]) -> int:
    """Bytes ``segment_volume`` holds at its peak for ``nifti`` (an :class:`~.io.NiftiFile`), from its
    header alone: the array as read and its float32 copy, then the larger of (the reoriented copy
    and the normalised model-grid input) and (the class probabilities on the model grid, their
    in-plane resampling, the labels and the optional full-resolution maps). The network's own
    working memory is left out: it depends on the window, not on the volume."""
    from .preprocess import grid_shapes

    n, c = nifti.voxels, nifti.channels
    classes = len(model.predictor.class_map.names)
    canon, grid = grid_shapes(nifti.shape, nifti.affine, model.prep)
    m = int(np.prod(grid, dtype=np.int64))
    forward = 4 * n * c + 4 * m * c
    plane = 4 * classes * canon[0] * canon[1] * grid[2]
    back = 4 * m * classes + plane + n
    if options.get("probabilities"):
        back += 2 * 4 * classes * n
    if options.get("uncertainty"):
        back += 2 * 4 * n + 4 * m
    return nifti.memory_bytes() + 4 * n * c + max(forward, back)


def _dims(volume: Any) -> str:
    return "x".join(map(str, (*volume.shape, volume.channels) if volume.channels > 1 else volume.shape))


def segment_volume(model: VolumeModel, source: Path, outputs: Mapping[str, Path], options: Mapping[str, Any], *,
                   series: Mapping[str, Any] | None = None, checkpoint: Path | None = None) -> dict[str, Any]:
    """Segment one case (a NIfTI file or a DICOM series, see :func:`.inputs.open_case`; ``series`` is
    the job's table of series) and write ``outputs["labels"]`` (NIfTI) and/or ``outputs["dicom_seg"]``
    (a DICOM SEG referencing the series), and ``probabilities`` / ``uncertainty`` when planned, on the
    input's exact grid; returns the volume report (mL per structure).

    The header is checked and the memory the case needs is planned from it before any voxel is read."""
    from .dicom import DicomSeries
    from .inputs import open_case
    from .memory import check_fits
    from .volumes import postprocess, volume_report, voxel_volume_mm3, write_label_volume, write_map_volume

    t0 = time.perf_counter()
    nifti = open_case(source, series)
    if options.get("format") == "dicom-seg" and not isinstance(nifti, DicomSeries):
        raise InputFileError(f"{source}: a DICOM SEG references the DICOM series it segments, and this input is NIfTI; "
                             "use --format nifti (or both, which writes SEGs for the DICOM inputs only)")
    check_fits(source, run_memory(nifti, model, options), f"segmenting its {_dims(nifti)} voxels")
    item = nifti.read()
    image = check_volume(item, model.predictor.model.in_channels, model.prep)
    voxel_ml = voxel_volume_mm3(item) / 1000.0  # before the network runs: no voxel size, no volumes
    method = options.get("uncertainty")
    labels, probs, unc = model.predict(image, item.spatial.affine_array(), uncertainty=method,
                                       probabilities="probabilities" in outputs)
    keep_largest, fill_holes = bool(options.get("keep_largest")), bool(options.get("fill_holes"))
    min_volume = float(options.get("min_volume") or 0.0)
    if keep_largest or fill_holes or min_volume:
        labels = postprocess(labels, voxel_ml, keep_largest=keep_largest, fill_holes=fill_holes, min_volume_ml=min_volume)
    if "labels" in outputs:
        write_label_volume(labels, item, outputs["labels"])
    report = volume_report(labels, item, model.predictor.class_map.names)
    if isinstance(nifti, DicomSeries):
        first = nifti.headers[0]
        report["dicom"] = {"uid": nifti.series_uid, "description": str(first.get("SeriesDescription", "") or ""),
                           "modality": str(first.get("Modality", "") or ""), "slices": len(nifti.files),
                           "study_uid": str(first.get("StudyInstanceUID", "") or "")}
    if "dicom_seg" in outputs:
        from .dicom_seg import model_name, write_dicom_seg

        classes = model.predictor.class_map
        report["dicom_seg"] = write_dicom_seg(labels, nifti, classes.names, classes.colors, outputs["dicom_seg"],
                                              model=model_name(model.predictor.card, checkpoint or Path("model")),
                                              checkpoint=checkpoint)
    if probs is not None:
        write_map_volume(probs, item, outputs["probabilities"])
    if unc is not None:
        write_map_volume(unc, item, outputs["uncertainty"])
        foreground = labels > 0
        report["uncertainty"] = {"method": method, "mean": round(float(unc.mean()), 5),
                                 "mean_in_foreground": round(float(unc[foreground].mean()), 5) if foreground.any() else None}
    report.update({"tta": bool(model.predictor.tta), "ct_window": model.ct_window,
                   "seconds": round(time.perf_counter() - t0, 3)})
    return report


def explain_volume(model: VolumeModel, source: Path, cam_path: Path, class_index: int,
                   layer: str | None = None) -> dict[str, Any]:
    """Seg-Grad-CAM for one class on one case (computed on the model grid), written to ``cam_path`` as
    a NIfTI map on the input's grid; returns the layer used and the share of the map inside the
    predicted class."""
    import torch

    from segsuite.core.explain import seg_grad_cam

    from .inputs import open_case
    from .memory import check_fits
    from .preprocess import from_model_grid, labels_from_model_grid, to_model_grid
    from .volumes import write_map_volume

    nifti = open_case(source)
    check_fits(source, run_memory(nifti, model, {}), f"explaining its {_dims(nifti)} voxels")
    item = nifti.read()
    image = check_volume(item, model.predictor.model.in_channels, model.prep)
    x, _, grid = to_model_grid(image, item.spatial.affine_array(), model.prep)
    batch = x.permute(3, 0, 1, 2) if model.slices else x[None]  # slice mode: one map per axial slice
    result = seg_grad_cam(model.predictor.model, batch.to(model.predictor.device), class_index, layer=layer)
    cam, predicted = result.cam.cpu(), result.labels.cpu()
    if model.slices:
        cam, predicted = cam.permute(1, 2, 0)[None], predicted.permute(1, 2, 0)[None]
    back = from_model_grid(cam, grid)[0]
    names = model.predictor.class_map.names
    labels = labels_from_model_grid(torch.nn.functional.one_hot(predicted[0], len(names)).movedim(-1, 0).float(), grid)
    write_map_volume(back, item, cam_path)
    inside = float(back[labels == class_index].sum() / back.sum()) if back.sum() > 0 else None
    return {"input": str(source), "class": names[class_index], "layer": result.layer,
            "region": "predicted" if "predicted" in result.region else "image", "share_in_predicted_region": inside,
            "predicted_share_of_volume": float((labels == class_index).mean())}
