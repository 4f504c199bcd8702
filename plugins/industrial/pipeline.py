"""``segsuite run industrial``: one part at a time through the core's job executor.

Per part :class:`InspectionPipeline` writes ``{stem}_mask.png`` (defect classes, 0 = good),
``{stem}_heatmap.png`` (defect probability on a fixed 0..1 scale), ``{stem}_overlay.png``
(defects tinted and boxed), with ``--uncertainty`` also ``{stem}_uncertainty.png``, and
returns the part's record (verdict, defect list, settings) that the executor writes as
``{stem}.json``. The batch (expansion, failures, ``summary.json``/``summary.csv``, resuming)
is the executor's; this pipeline adds the OK/NG count after the batch and the verdict columns
of ``summary.csv``. It also scores a model on labelled parts (``segsuite evaluate industrial``
and the demo), see :mod:`.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segsuite.core.data.images import IMAGE_SUFFIXES
from segsuite.core.image_pipeline import UNCERTAINTY
from segsuite.core.pipeline import BasePipeline, RunContext, RunOption

OPTIONS = (
    RunOption("threshold", float, None, minimum=0.0, maximum=1.0, exclusive=True,
              help="Defect probability at which a pixel is defective (default: the model card's calibrated value, else 0.5)"),
    RunOption("min_area", int, None, minimum=0,
              help="Smallest defect region in pixels that makes a part NG (default: the model card's, else 10)"),
    RunOption("pixel_size", float, None, minimum=0.0, exclusive=True,
              help="Millimetres per pixel: defect areas are also reported in mm²"),
    UNCERTAINTY,
)


@dataclass(frozen=True)
class Inspector:
    """What :meth:`InspectionPipeline.load` prepares once per job: the model and the working settings."""

    predictor: Any
    threshold: float
    min_area: int


class InspectionPipeline(BasePipeline):
    """Defect masks, heatmaps, overlays and an OK/NG verdict per part (see the module docstring)."""

    name = "industrial"
    options = OPTIONS
    suffixes = tuple(IMAGE_SUFFIXES)
    default_output = Path("segsuite-inspection")

    # -- running --------------------------------------------------------------------

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Inspector:
        """The model, and the threshold and minimum area from the options or its card."""
        from segsuite.core.pipeline import load_predictor

        from .inspection import InspectOptions, settings

        # a 3D model, or MC dropout without dropout, is a model problem, not a part's: stop before the batch
        predictor = load_predictor(checkpoint, device, options, spatial_dims=2, what="part inspection")
        threshold, min_area = settings(predictor.card, InspectOptions(threshold=options.get("threshold"),
                                                                      min_area=options.get("min_area")))
        return Inspector(predictor, threshold, min_area)

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        """Mask, heatmap, overlay (and uncertainty picture) PNGs and the record, named from ``stem``."""
        outs = {"mask": folder / f"{stem}_mask.png", "heatmap": folder / f"{stem}_heatmap.png",
                "overlay": folder / f"{stem}_overlay.png"}
        if options.get("uncertainty"):
            outs["uncertainty"] = folder / f"{stem}_uncertainty.png"
        outs["record"] = folder / f"{stem}.json"
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        """Inspect one part at native resolution and write its pictures; the record is its verdict."""
        from segsuite.core.data.images import read_image, write_image
        from segsuite.core.errors import InputFileError
        from segsuite.core.uncertainty import summary as uncertainty_summary
        from segsuite.core.visualize import heatmap as uncertainty_heatmap

        from .inspection import (InspectOptions, defect_probability, defect_probability_and_uncertainty, find_defects,
                                 heatmap, overlay_defects, to_model_channels)

        t0 = time.perf_counter()
        inspector: Inspector = context.model
        predictor = inspector.predictor
        method = context.options.get("uncertainty")
        pixel_size = context.options.get("pixel_size")
        item = read_image(source)
        if 0 in item.array.shape:
            raise InputFileError(f"{source}: image has zero size")
        arr = to_model_channels(item.array, predictor.model.in_channels, predictor.card)
        umap = None
        if method:
            probs, umap = defect_probability_and_uncertainty(predictor, arr, InspectOptions(), method)
        else:
            probs = defect_probability(predictor, arr, InspectOptions())
        class_map = predictor.class_map
        labels, defects, p_defect = find_defects(probs, class_map, inspector.threshold, inspector.min_area, pixel_size)
        write_image(outputs["mask"], labels)
        write_image(outputs["heatmap"], heatmap(p_defect))
        write_image(outputs["overlay"], overlay_defects(item.array, labels, defects, class_map))
        record: dict[str, Any] = {
            "image": str(source), "verdict": "NG" if defects else "OK", "defects": defects,
            "threshold": inspector.threshold, "min_area_px": inspector.min_area, "size": list(labels.shape),
            "max_defect_probability": round(float(p_defect.max()), 4),
        }
        from segsuite.core.drift import check_input_drift  # a part unlike the training data: one warning, a flag

        record.update(check_input_drift(predictor.card, arr, source, context.warn))
        if umap is not None:
            write_image(outputs["uncertainty"], uncertainty_heatmap(umap))
            record["uncertainty"] = {"method": method, **uncertainty_summary(umap)}
        record["seconds"] = round(time.perf_counter() - t0, 4)
        return record

    def describe(self, record: Mapping[str, Any]) -> str:
        """``name  verdict  defects`` (a row of the batch's verdict table)."""
        what = ", ".join(f"{d['class']} {d['area_px']}px" for d in record["defects"])
        return f"{Path(record['image']).name[:40]:<40} {record['verdict']:<7} {what}".rstrip()

    # -- the batch ------------------------------------------------------------------

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> str:
        """The OK/NG count of the parts inspected (failed inputs are counted by the executor)."""
        ok = sum(r["verdict"] == "OK" for r in records)
        ng = sum(r["verdict"] == "NG" for r in records)
        return f"\nOK {ok}   NG {ng}   ({len(records)} parts)"

    def summary_fields(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The verdict columns of ``summary.csv``."""
        return {"verdict": record["verdict"], "defects": len(record["defects"]),
                "classes": ";".join(sorted({d["class"] for d in record["defects"]})),
                "max_defect_probability": record["max_defect_probability"]}

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: Any, report_dir: Path) -> Any:
        """Pictures of the parts (defective first), the verdict and defect tables."""
        from .report import inspection_section

        return inspection_section(records, class_map, report_dir)

    # -- evaluation -----------------------------------------------------------------

    def evaluate(self, checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict[str, Any]:
        """Part-, defect- and pixel-level metrics on labelled parts (``output/metrics.json``)."""
        from .metrics import evaluate_parts

        return evaluate_parts(checkpoint, data, output, device=device)

    def describe_evaluation(self, result: Mapping[str, Any]) -> str:
        """What ``segsuite evaluate industrial`` prints."""
        from .report import describe_metrics

        return describe_metrics(result)

    def add_evaluation(self, section: Any, result: Mapping[str, Any], output: Path) -> None:
        """The metrics, confusion matrix and verdict-against-reference table in ``section``."""
        from .report import add_inspection_metrics

        add_inspection_metrics(section, result, output)
