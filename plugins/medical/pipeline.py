"""The medical domain's pipeline: what ``segsuite run medical`` and ``segsuite explain medical`` do per case.

The core's job executor expands the inputs, plans the output names, loads the model once
(:meth:`VolumePipeline.load`) and calls :meth:`VolumePipeline.run_one` for each case, a NIfTI
volume or a DICOM series (:meth:`VolumePipeline.expand` makes each series, many files, one
input; see :mod:`.inputs`); failures, the progress bar, ``summary.json`` and resuming are its
business, not ours. Per case ``run`` writes ``{case}_seg.nii.gz`` (labels on the input's exact
grid) or, with ``--format dicom-seg``, ``{case}_seg.dcm`` (a DICOM SEG referencing the source
series), or both; the executor writes the returned volume report as ``{case}_seg.json``;
``--probabilities`` and ``--uncertainty`` add ``{case}_probabilities.nii.gz`` and
``{case}_uncertainty.nii.gz``. The case name is the file name without ``.nii`` / ``.nii.gz``,
or for a series its SeriesDescription (its UID when two series share one).

This module imports nothing heavy at import time: the plugin hands a :class:`VolumePipeline`
to its Domain while the plugins are discovered, and ``segsuite --help`` must stay light.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
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
FORMATS = ("nifti", "dicom-seg", "both")

OPTIONS = (
    RunOption("keep_largest", bool, False, help="Keep only the largest connected component of each class"),
    RunOption("fill_holes", bool, False, help="Fill the holes each class encloses"),
    RunOption("min_volume", float, 0.0, minimum=0.0, help="Remove components smaller than this many mL"),
    RunOption("probabilities", bool, False, help="Also write the class probabilities (4D NIfTI on the input grid)"),
    RunOption("tta", bool, False, help="Average the mirrored passes (8 passes, about 8x the time)"),
    RunOption("fast", bool, False, help="Speed preset: no TTA, 25% window overlap instead of 50%"),
    UNCERTAINTY,
    RunOption("format", str, "nifti", choices=FORMATS,
              help="Label output: nifti ({case}_seg.nii.gz), dicom-seg ({case}_seg.dcm, a DICOM SEG that references "
                   "the source series; DICOM inputs only) or both (NIfTI for every input, SEG for DICOM series)"),
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
    for suffix in (*NIFTI_SUFFIXES, ".dcm"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


class SeriesInputs:
    """Inputs that are NIfTI files or DICOM series (one input per SeriesInstanceUID), for the
    pipelines of ``run medical`` and ``explain medical`` alike."""

    series: dict[str, Any]
    """The DICOM series :meth:`expand` found, by input name (``FOLDER/SeriesInstanceUID``)."""

    def expand(self, spec: str | Path, warn: Callable[[str], None]) -> list[Path]:
        """NIfTI files, and each DICOM series as one input (:func:`.inputs.expand_cases`)."""
        from .inputs import expand_cases

        inputs, table = expand_cases(spec, warn)
        self.series.update(table)
        return inputs

    def stem(self, source: Path) -> str:
        series = self.series.get(str(source))
        return series.stem if series is not None else super().stem(source)  # type: ignore[misc]  # BasePipeline's


class VolumePipeline(SeriesInputs, BasePipeline):
    """``segsuite run medical``: a label volume with the input's exact geometry and a volume report per case."""

    name = "medical"
    options = OPTIONS
    suffixes = (".nii", ".nii.gz")
    default_output = Path("segsuite-run")
    single_file_suffixes = (*NIFTI_SUFFIXES, ".dcm")

    def __init__(self) -> None:
        self.series = {}

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
        from .inputs import is_nifti

        fmt = options.get("format") or "nifti"
        nifti = fmt != "dicom-seg" or is_nifti(source)  # a NIfTI input fails at run time under dicom-seg
        seg = fmt != "nifti" and not is_nifti(source)
        if file is not None:  # --output x.nii.gz (or x.dcm) for one input: x.json, x_probabilities.nii.gz beside it
            folder, base = file.parent, _volume_stem(file.name)
            if file.name.lower().endswith(".dcm") and not seg:
                raise SegsuiteError(f"{file}: a .dcm output is a DICOM SEG of a DICOM series; add --format dicom-seg "
                                    "(or name a .nii.gz file)")
            main = "dicom_seg" if file.name.lower().endswith(".dcm") else "labels"
            outs = {"record": folder / f"{base}.json"}
            if nifti:
                outs["labels"] = file if main == "labels" else folder / f"{base}.nii.gz"
            if seg:
                outs["dicom_seg"] = file if main == "dicom_seg" else folder / f"{base}.dcm"
        else:
            base = stem
            outs = {"record": folder / f"{stem}_seg.json"}
            if nifti:
                outs["labels"] = folder / f"{stem}_seg.nii.gz"
            if seg:
                outs["dicom_seg"] = folder / f"{stem}_seg.dcm"
        series = self.series.get(str(source))
        if series is not None:  # the executor protects the inputs it knows; a series' files are ours to protect
            files = {p.resolve() for p in series.files}
            for path in outs.values():
                if path.resolve() in files:
                    raise SegsuiteError(f"{path}: an output of {source} would overwrite one of its DICOM files; "
                                        "choose another --output")
        if options.get("probabilities"):
            outs["probabilities"] = folder / f"{base}_probabilities.nii.gz"
        if options.get("uncertainty"):
            outs["uncertainty"] = folder / f"{base}_uncertainty.nii.gz"
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from .run import segment_volume

        with warnings_to(context):
            return segment_volume(context.model, source, outputs, context.options, series=self.series,
                                  checkpoint=context.checkpoint)

    def describe(self, record: Mapping[str, Any]) -> str:
        outs = record.get("outputs", {})
        written = " + ".join(Path(outs[k]).name for k in ("labels", "dicom_seg") if k in outs)
        series = record.get("dicom")
        name = (f"{series['description'] or series['uid']} ({series['slices']} slices)" if series
                else Path(record["input"]).name)
        return f"{name} -> {written}: " + ", ".join(
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


class VolumeExplainPipeline(SeriesInputs, BasePipeline):
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
        self.series = {}

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
