"""The medical domain's pipeline: what ``segsuite run medical`` and ``segsuite explain medical`` do per case.

The core's job executor expands the inputs, plans the output names, loads the model once
(:meth:`VolumePipeline.load`) and calls :meth:`VolumePipeline.run_one` for each NIfTI volume;
failures, the progress bar, ``summary.json`` and resuming are its business, not ours. Per case
``run`` writes ``{case}_seg.nii.gz`` (labels on the input's exact grid) and the executor writes
the returned volume report as ``{case}_seg.json``; ``--probabilities`` and ``--uncertainty``
add ``{case}_probabilities.nii.gz`` and ``{case}_uncertainty.nii.gz``. The case name is the
file name without ``.nii`` / ``.nii.gz``.

This module imports nothing heavy at import time: the plugin hands a :class:`VolumePipeline`
to its Domain while the plugins are discovered, and ``segsuite --help`` must stay light.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segsuite.core.errors import SegsuiteError
from segsuite.core.image_pipeline import UNCERTAINTY
from segsuite.core.pipeline import BasePipeline, RunContext, RunOption

if TYPE_CHECKING:
    from segsuite.core.classmap import ClassMap
    from segsuite.core.report import ReportSection

NIFTI_SUFFIXES = (".nii.gz", ".nii")

OPTIONS = (
    RunOption("keep_largest", bool, False, help="Keep only the largest connected component of each class"),
    RunOption("fill_holes", bool, False, help="Fill the holes each class encloses"),
    RunOption("min_volume", float, 0.0, minimum=0.0, help="Remove components smaller than this many mL"),
    RunOption("probabilities", bool, False, help="Also write the class probabilities (4D NIfTI on the input grid)"),
    RunOption("tta", bool, False, help="Average the mirrored passes (8 passes, about 8x the time)"),
    RunOption("fast", bool, False, help="Speed preset: no TTA, 25% window overlap instead of 50%"),
    UNCERTAINTY,
)


def format_ml(volume_ml: float) -> str:
    """A volume for the console: one decimal from 1 mL up, two significant digits below (a 0.05 mL
    component must not read "0.0 mL", which says "nothing there"), and "0 mL" only for nothing."""
    if volume_ml == 0:
        return "0 mL"
    if abs(volume_ml) >= 1:
        return f"{volume_ml:.1f} mL"
    return f"{float(f'{volume_ml:.2g}'):g} mL"  # :g keeps 0.00012 short, and never rounds a component to zero


@contextmanager
def warnings_to(context: RunContext) -> Iterator[None]:
    """Hand the medical reader's warnings (:class:`~.io.NiftiWarning`) to the job's console, one line each,
    after the input succeeded; a failed input says only its error."""
    from .io import NiftiWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NiftiWarning)
        yield
    for w in caught:
        if issubclass(w.category, NiftiWarning):
            context.warn(str(w.message))
        else:  # not ours: shown as Python would have shown it
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _volume_stem(name: str) -> str:
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


class VolumePipeline(BasePipeline):
    """``segsuite run medical``: a label volume with the input's exact geometry and a volume report per case."""

    name = "medical"
    options = OPTIONS
    suffixes = (".nii", ".nii.gz")
    default_output = Path("segsuite-run")
    single_file_suffixes = NIFTI_SUFFIXES

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        """The :class:`~.run.VolumeModel`; refuses a model the options cannot run (TTA or uncertainty
        by flips on a model not trained mirrored on every axis, MC dropout without dropout)."""
        from segsuite.core.uncertainty import require_dropout

        from .run import VolumeModel

        model = VolumeModel.load(checkpoint, device, fast=bool(options.get("fast")), tta=bool(options.get("tta")))
        method = options.get("uncertainty")
        if method == "tta":
            model.check_mirroring()
        elif method == "mcdropout":
            require_dropout(model.predictor.model)
        return model

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        if file is not None:  # --output x.nii.gz for one input: x.json, x_probabilities.nii.gz beside it
            folder, base = file.parent, _volume_stem(file.name)
            outs = {"labels": file, "record": folder / f"{base}.json"}
        else:
            base = stem
            outs = {"labels": folder / f"{stem}_seg.nii.gz", "record": folder / f"{stem}_seg.json"}
        if options.get("probabilities"):
            outs["probabilities"] = folder / f"{base}_probabilities.nii.gz"
        if options.get("uncertainty"):
            outs["uncertainty"] = folder / f"{base}_uncertainty.nii.gz"
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from .run import segment_volume

        with warnings_to(context):
            return segment_volume(context.model, source, outputs, context.options)

    def describe(self, record: Mapping[str, Any]) -> str:
        labels = Path(record.get("outputs", {}).get("labels", ""))
        return f"{Path(record['input']).name} -> {labels.name}: " + ", ".join(
            f"{n} {format_ml(v['volume_ml'])} ({v['components']} part(s))" for n, v in record["classes"].items())

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: "ClassMap",
                       report_dir: Path) -> "ReportSection":
        from .report import run_report

        return run_report(records, class_map, report_dir)

    # -- Evaluates ---------------------------------------------------------------------

    def evaluate(self, checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict[str, Any]:
        """Dice, HD95, NSD and volume error per structure, each case scored on its reference's own grid."""
        from .evaluate import evaluate_volumes

        return evaluate_volumes(checkpoint, data, output, device=device)

    def describe_evaluation(self, result: Mapping[str, Any]) -> str:
        from .evaluate import evaluation_text

        return evaluation_text(dict(result))

    def add_evaluation(self, section: "ReportSection", result: Mapping[str, Any], output: Path) -> None:
        from .report import add_evaluation

        add_evaluation(section, result, output)

    # -- Explains ----------------------------------------------------------------------

    def explainer(self, class_name: str, layer: str | None) -> "VolumeExplainPipeline":
        return VolumeExplainPipeline(class_name, layer)


class VolumeExplainPipeline(BasePipeline):
    """``segsuite explain medical --class NAME``: per case a Seg-Grad-CAM map on the input's grid,
    ``{case}_{class}_cam.nii.gz``, and its record ``{case}_{class}_cam.json`` (layer, share of the map
    inside the predicted class)."""

    name = "medical"
    options = ()
    suffixes = (".nii", ".nii.gz")
    default_output = Path("segsuite-explain")

    def __init__(self, class_name: str, layer: str | None = None) -> None:
        self.class_name = class_name
        self.layer = layer

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        from segsuite.core.explain import class_index

        from .run import VolumeModel

        if str(checkpoint).lower().endswith(".onnx"):
            raise SegsuiteError(f"{checkpoint}: explanations need the model's gradients; pass the .safetensors checkpoint, "
                                "not an ONNX export")
        model = VolumeModel.load(checkpoint, device)
        class_index(model.predictor.class_map, self.class_name)  # an unknown class stops the job before any input
        return model

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        from segsuite.core.explain import safe_name

        base = f"{stem}_{safe_name(self.class_name)}_cam"
        return {"cam": folder / f"{base}.nii.gz", "record": folder / f"{base}.json"}

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from segsuite.core.explain import class_index

        from .run import explain_volume

        model = context.model
        index = class_index(model.predictor.class_map, self.class_name)
        with warnings_to(context):
            return explain_volume(model, source, outputs["cam"], index, layer=self.layer)

    def describe(self, record: Mapping[str, Any]) -> str:
        cam = Path(record.get("outputs", {}).get("cam", ""))
        inside = record.get("share_in_predicted_region") or 0
        return (f"{Path(record['input']).name} -> {cam.name} (layer {record['layer']}; {100 * inside:.0f}% of the map "
                f"inside the predicted {record['class']})")
