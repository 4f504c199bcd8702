"""The core's own pipelines for 2D images: segmentation (``segsuite run`` without a domain, or
with a 2D domain that brings no pipeline of its own) and Seg-Grad-CAM explanations
(``segsuite explain DOMAIN`` for 2D domains that do not explain their inputs themselves).

Both read each input with the domain's reader (or the core's image reader), so they work for
any 2D domain; the executor (:mod:`segsuite.core.jobs`) runs them like any plugin pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .classmap import ClassMap
from .errors import SegsuiteError
from .pipeline import BasePipeline, RunContext, RunOption

UNCERTAINTY_METHODS = ("entropy", "tta", "mcdropout")

UNCERTAINTY = RunOption(
    "uncertainty", str, None, choices=UNCERTAINTY_METHODS,
    help="Also write an uncertainty map: entropy (free), tta (flips: 2-8x the time) or mcdropout (8x; models with dropout)")


def _read_image(path: Path) -> Any:
    from .data.images import read_image

    return read_image(path)


class ImagePipeline(BasePipeline):
    """Per image: ``{stem}_labels.png`` (class indices), ``{stem}_color.png``, ``{stem}_overlay.png``
    and ``{stem}.json`` (pixels and share per class); with ``--uncertainty`` also
    ``{stem}_uncertainty.png`` (fixed 0..1 scale) and ``{stem}_uncertainty.tif`` (the float map)."""

    options = (UNCERTAINTY,)

    def __init__(self, reader: Callable[[Path], Any] | None = None, suffixes: Sequence[str] | None = None,
                 name: str = "run") -> None:
        from .data.images import IMAGE_SUFFIXES

        self.reader = reader or _read_image
        self.suffixes = tuple(suffixes) if suffixes is not None else tuple(IMAGE_SUFFIXES)
        self.name = name

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        from .pipeline import load_predictor

        return load_predictor(checkpoint, device, options, spatial_dims=2,
                              what="the 2D image pipeline (run a 3D model through its domain: segsuite run DOMAIN)")

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        outs = {"labels": folder / f"{stem}_labels.png", "color": folder / f"{stem}_color.png",
                "overlay": folder / f"{stem}_overlay.png", "record": folder / f"{stem}.json"}
        if options.get("uncertainty"):
            outs["uncertainty_picture"] = folder / f"{stem}_uncertainty.png"
            outs["uncertainty"] = folder / f"{stem}_uncertainty.tif"
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from . import uncertainty as unc
        from .data.images import match_bit_depth, require_finite, write_image
        from .visualize import heatmap, overlay

        predictor = context.model
        classes = predictor.class_map
        method = context.options.get("uncertainty")
        item = self.reader(source)  # a domain's reader may give floats: NaN and infinity are refused here too
        array = match_bit_depth(require_finite(np.asarray(item.array), source, channel_axis=0),
                                predictor.normalization.get("dtype"))
        umap = None
        if method:
            probs, umap_t = predictor.probabilities_and_uncertainty(array, method)
            labels_t, umap = probs.argmax(1)[0], umap_t[0].cpu().numpy().astype(np.float32)
        else:
            labels_t = predictor.predict(array)[0]
        labels = labels_t.cpu().numpy().astype(np.uint8 if classes.num_classes <= 256 else np.uint16)
        write_image(outputs["labels"], labels)
        write_image(outputs["color"], classes.colorize(labels))
        write_image(outputs["overlay"], overlay(item.array, labels, classes))
        counts = np.bincount(labels.ravel(), minlength=classes.num_classes)
        record: dict[str, Any] = {
            "input": str(source),
            "size": list(labels.shape),
            "pixels": {n: int(c) for n, c in zip(classes.names, counts)},
            "fraction": {n: float(c) / labels.size for n, c in zip(classes.names, counts)},
        }
        from .drift import check_input_drift  # input unlike the training data: one warning, a flag in the record

        record.update(check_input_drift(getattr(predictor, "card", None), array, source, context.warn))
        if umap is not None:
            write_image(outputs["uncertainty_picture"], heatmap(umap))
            write_image(outputs["uncertainty"], umap)
            record["uncertainty"] = {"method": method, **unc.summary(umap)}
        return record

    def describe(self, record: Mapping[str, Any]) -> str:
        return f"{Path(record['input']).name}: " + ", ".join(f"{n} {100 * f:.1f}%" for n, f in record["fraction"].items())

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: ClassMap, report_dir: Path) -> Any:
        from .report import predictions_section

        return predictions_section(records, class_map, domain=self.name)


class ImageExplainPipeline(BasePipeline):
    """Per 2D input: ``{stem}_{class}_cam.png``, ``{stem}_{class}_cam_overlay.png`` and
    ``{stem}_{class}_cam.json`` (see :func:`segsuite.core.explain.explain_image`)."""

    options = (RunOption("max_size", int, 1024, minimum=16,
                         help="Inputs larger than this on a side are explained on their centre crop"),)
    default_output = Path("segsuite-explain")

    def __init__(self, class_name: str, layer: str | None = None, reader: Callable[[Path], Any] | None = None,
                 suffixes: Sequence[str] = (), name: str = "explain") -> None:
        self.class_name = class_name
        self.layer = layer
        self.reader = reader or _read_image
        self.suffixes = tuple(suffixes)
        self.name = name

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        from .explain import class_index
        from .pipeline import load_predictor

        if str(checkpoint).lower().endswith(".onnx"):
            raise SegsuiteError(f"{checkpoint}: explanations need the model's gradients; pass the .safetensors checkpoint, "
                                "not an ONNX export")
        predictor = load_predictor(checkpoint, device, spatial_dims=2, what="an image explanation")
        class_index(predictor.class_map, self.class_name)  # an unknown class fails before any input
        return predictor

    def _cam_stem(self, stem: str) -> str:
        from .explain import safe_name

        return f"{stem}_{safe_name(self.class_name)}_cam"

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        base = self._cam_stem(stem)
        return {"cam": folder / f"{base}.png", "overlay": folder / f"{base}_overlay.png", "record": folder / f"{base}.json"}

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from .explain import class_index, explain_image

        from .drift import check_input_drift

        predictor = context.model
        index = class_index(predictor.class_map, self.class_name)
        item = self.reader(source)
        record = explain_image(predictor, item, index, outputs, layer=self.layer,
                               max_size=int(context.options.get("max_size") or 1024))
        # an explanation of an input unlike the training data explains noise: say so, as `run` does
        array = np.asarray(item.array)
        nodata = getattr(getattr(item, "spatial", None), "nodata", None)
        valid = ~np.all(array == nodata, axis=0) if nodata is not None else None
        record.update(check_input_drift(getattr(predictor, "card", None), array, source, context.warn, valid=valid))
        return record

    def describe(self, record: Mapping[str, Any]) -> str:
        from .explain import describe_explanation

        return describe_explanation(record)
