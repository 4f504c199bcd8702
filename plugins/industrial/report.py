"""The industrial section of reports: parts with their defects, OK/NG verdicts, and inspection metrics.

:func:`inspection_section` is what ``segsuite run industrial --report`` shows (and the first
half of the demo's section); :func:`add_inspection_metrics` adds what ``segsuite evaluate
industrial`` measured against reference masks (the demo's second half).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segsuite.core.classmap import ClassMap
from segsuite.core.report import ReportSection, Table, fmt

VERDICT_ORDER = {"NG": 0, "OK": 1}


def _failed_inputs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The inputs the job that wrote ``records`` could not inspect, from its ``summary.json``.

    The executor hands the report only the records of parts that were inspected; the failed
    ones are listed in the job's summary, which lies beside the records (the job folder).
    """
    if not records:
        return []
    summary = Path(records[0]["outputs"]["record"]).parent / "summary.json"
    try:
        inputs = json.loads(summary.read_text()).get("inputs", [])
    except (OSError, ValueError, AttributeError):
        return []
    done = {str(r.get("input")) for r in records}
    return [i for i in inputs if isinstance(i, dict) and i.get("status") == "failed" and str(i.get("input")) not in done]


def inspection_section(records: Sequence[Mapping[str, Any]], class_map: ClassMap, report_dir: Path,
                       max_parts: int = 8) -> ReportSection:
    """What ``segsuite run industrial`` wrote: per part the image, the overlay with boxed defects and
    the heatmap (defective parts first), the verdict table and every defect found.

    Pictures are taken from each record's ``outputs`` (the paths the executor planned); the
    input previews are written into ``report_dir``.
    """
    from segsuite.core.data.images import read_image
    from segsuite.core.report import write_preview

    report_dir = Path(report_dir)
    section = ReportSection(domain="industrial", title="Industrial: defect inspection, OK/NG per part", legend=class_map)
    pictured = sorted(records, key=lambda r: VERDICT_ORDER.get(r["verdict"], 2))[:max_parts]
    for r in pictured:
        outputs = {k: Path(v) for k, v in r["outputs"].items()}
        src, stem = Path(r["image"]), outputs["record"].stem
        what = ", ".join(d["class"] for d in r["defects"]) or "no defect"
        preview = write_preview(read_image(src).array, report_dir / f"{stem}_input.png")
        section.images.append((f"{src.name}: {r['verdict']} ({what})", preview))
        section.images.append((f"{src.name}: defects outlined and boxed", outputs["overlay"]))
        section.images.append((f"{src.name}: defect probability, 0 black to 1 yellow", outputs["heatmap"]))
        if "uncertainty" in outputs:
            section.add_uncertainty(r, outputs["uncertainty"], src.name)
        section.files.append((outputs["record"].name, outputs["record"]))
    failed = _failed_inputs(records)
    verdicts, defects = [], []
    for r in records:
        verdicts.append([Path(r["image"]).name, r["verdict"], len(r["defects"]),
                         ", ".join(f"{d['class']} {d['area_px']} px" for d in r["defects"]),
                         r.get("max_defect_probability")])
        for d in r["defects"]:
            x, y, w, h = d["bbox_xywh"]
            defects.append([d["class"], Path(r["image"]).name, d["area_px"], d.get("area_mm2"), f"{x},{y} {w}x{h}",
                            d["max_confidence"], d["mean_confidence"]])
    verdicts += [[Path(f["input"]).name, "ERROR", 0, f.get("error") or "failed", None] for f in failed]
    section.tables.append(Table("Verdicts", ["image", "verdict", "defects", "what", "max defect probability"], verdicts))
    if defects:
        section.tables.append(Table("Defects found", ["class", "image", "area (px)", "area (mm²)", "box x,y w x h",
                                                      "max confidence", "mean confidence"], defects))
    if records:
        summary_csv = Path(records[0]["outputs"]["record"]).parent / "summary.csv"
        if summary_csv.is_file():
            section.files.insert(0, ("summary.csv", summary_csv))
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("OK", "NG")}
    section.facts += [("parts", str(len(records) + len(failed))), ("OK", str(counts["OK"])), ("NG", str(counts["NG"]))]
    if failed:
        section.facts.append(("failed", str(len(failed))))
    if records:
        first = records[0]
        section.notes.append(f"a part is NG when a region of defect probability >= {fmt(first['threshold'])} covers at "
                             f"least {first['min_area_px']} px")
    if len(records) > len(pictured):
        section.notes.append(f"pictures of {len(pictured)} of {len(records)} parts (defective first); the tables list all")
    return section


def describe_metrics(result: Mapping[str, Any]) -> str:
    """What ``segsuite evaluate industrial`` prints: part-, defect- and pixel-level results."""
    p, d = result["part_level"], result["defects"]
    return "\n".join([
        f"parts: {p['parts']} at threshold {result['threshold']:.3f}, min area {result['min_area_px']} px",
        f"  recall {p['recall']:.3f}  precision {p['precision']:.3f}  F1 {p['f1']:.3f}  "
        f"false alarms {p['false_alarm_rate']:.3f}  escapes per 1000 parts {p['escapes_per_1000']:.1f}",
        f"defects: {d['found']} found, {d['missed']} missed, {d['false_detections']} false detections",
        f"pixels: AUROC {result['pixel_auroc']:.4f}  AUPRO@0.3 {result['aupro_0.3']:.4f}  "
        f"mIoU {result['pixel_metrics']['mean_iou'] or float('nan'):.4f}",
    ])


def add_inspection_metrics(section: ReportSection, result: Mapping[str, Any], output: Path) -> None:
    """The evaluation against reference masks: pixel metrics with the confusion matrix (written to
    ``output/confusion.png``), the part- and defect-level numbers, the per-part verdict table and
    the headline facts."""
    from segsuite.core.report import Evaluation, write_confusion

    output = Path(output)
    pixel = result["pixel_metrics"]
    confusion = write_confusion(pixel["confusion_matrix"], list(pixel["per_class"]), output / "confusion.png")
    p, d = result["part_level"], result["defects"]
    extra = [("part recall", p["recall"]), ("part precision", p["precision"]), ("part F1", p["f1"]),
             ("false-alarm rate", p["false_alarm_rate"]), ("defects found", d["found"]), ("defects missed", d["missed"]),
             ("false detections", d["false_detections"]), ("pixel AUROC", result["pixel_auroc"]),
             ("AUPRO (FPR <= 0.3)", result["aupro_0.3"])]
    section.evaluation = Evaluation.from_metrics(pixel, confusion=confusion, extra=extra, source=output / "metrics.json")
    section.tables.append(Table("Verdict against the reference masks", ["image", "truth", "verdict", "defects"],
                                [[r["image"], r["truth"], r["verdict"], r["defects"]] for r in result["parts"]]))
    section.facts += [("part recall", fmt(p["recall"])), ("pixel mean IoU", fmt(pixel["mean_iou"]))]
