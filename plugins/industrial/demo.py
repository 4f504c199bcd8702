"""The industrial section of reports: parts with their defects, OK/NG verdicts and (demo) inspection metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.classmap import ClassMap
from segsuite.core.report import ReportSection, Table, fmt


def run_report(records: list[dict[str, Any]], output: Path | None, class_map: ClassMap, report_dir: Path,
               max_parts: int = 8) -> ReportSection:
    """What ``segsuite run industrial`` wrote: per part the image, the overlay with boxed defects and
    the heatmap (defective parts first), the verdict table and every defect found."""
    from segsuite.core.data.images import read_image
    from segsuite.core.report import write_preview

    out = Path(output) if output is not None else Path("segsuite-inspection")  # inspect_files' default
    report_dir = Path(report_dir)
    section = ReportSection(domain="industrial", title="Industrial: defect inspection, OK/NG per part", legend=class_map)
    order = {"NG": 0, "OK": 1, "ERROR": 2}
    pictured = [r for r in sorted(records, key=lambda r: order.get(r["verdict"], 3)) if r["verdict"] != "ERROR"][:max_parts]
    for r in pictured:
        item = read_image(Path(r["image"]))
        src, stem = Path(r["image"]), item.name
        what = ", ".join(d["class"] for d in r["defects"]) or "no defect"
        section.images.append((f"{src.name}: {r['verdict']} ({what})", write_preview(item.array, report_dir / f"{stem}_input.png")))
        section.images.append((f"{src.name}: defects outlined and boxed", out / f"{stem}_overlay.png"))
        section.images.append((f"{src.name}: defect probability, 0 black to 1 yellow", out / f"{stem}_heatmap.png"))
        section.add_uncertainty(r, out / f"{stem}_uncertainty.png", src.name)
        section.files.append((f"{stem}.json", out / f"{stem}.json"))
    verdicts, defects = [], []
    for r in records:
        verdicts.append([Path(r["image"]).name, r["verdict"], len(r["defects"]),
                         r.get("error") or ", ".join(f"{d['class']} {d['area_px']} px" for d in r["defects"]),
                         r.get("max_defect_probability")])
        for d in r["defects"]:
            x, y, w, h = d["bbox_xywh"]
            defects.append([d["class"], Path(r["image"]).name, d["area_px"], d.get("area_mm2"), f"{x},{y} {w}x{h}",
                            d["max_confidence"], d["mean_confidence"]])
    section.tables.append(Table("Verdicts", ["image", "verdict", "defects", "what", "max defect probability"], verdicts))
    if defects:
        section.tables.append(Table("Defects found", ["class", "image", "area (px)", "area (mm²)", "box x,y w x h",
                                                      "max confidence", "mean confidence"], defects))
    if (out / "summary.csv").is_file():
        section.files.insert(0, ("summary.csv", out / "summary.csv"))
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("OK", "NG", "ERROR")}
    section.facts += [("parts", str(len(records))), ("OK", str(counts["OK"])), ("NG", str(counts["NG"]))]
    if counts["ERROR"]:
        section.facts.append(("unreadable", str(counts["ERROR"])))
    if records and "threshold" in next((r for r in records if r["verdict"] != "ERROR"), {}):
        first = next(r for r in records if r["verdict"] != "ERROR")
        section.notes.append(f"a part is NG when a region of defect probability >= {fmt(first['threshold'])} covers at "
                             f"least {first['min_area_px']} px")
    if len(records) > len(pictured) + counts["ERROR"]:
        section.notes.append(f"pictures of {len(pictured)} of {len(records)} parts (defective first); the tables list all")
    return section


def demo(output: Path, device: str) -> ReportSection:
    """The six shipped parts through ``segsuite run industrial`` and ``segsuite evaluate industrial``."""
    from segsuite.core.data.images import IMAGE_SUFFIXES
    from segsuite.core.demo import sample_files
    from segsuite.core.checkpoint import read_card
    from segsuite.core.report import Evaluation, write_confusion

    from .inspect import inspect_files
    from .metrics import evaluate_parts

    parts, model = sample_files("industrial", "parts", "model.safetensors")
    output = Path(output)
    images = sorted(p for p in (parts / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    class_map = read_card(model).classes
    records = inspect_files(images, model, output / "inspection", device=device)
    section = run_report(records, output / "inspection", class_map, output)
    section.notes.insert(0, f"segsuite run industrial --input {parts.name}/images, then segsuite evaluate industrial "
                            f"--data {parts.name}: the shipped model on {len(images)} synthetic grey parts (brushed metal, "
                            "woven fabric) against their defect masks.")
    result = evaluate_parts(model, parts, output / "evaluation", device=device)
    pixel = result["pixel_metrics"]
    confusion = write_confusion(pixel["confusion_matrix"], list(pixel["per_class"]), output / "evaluation" / "confusion.png")
    p, d = result["part_level"], result["defects"]
    extra = [("part recall", p["recall"]), ("part precision", p["precision"]), ("part F1", p["f1"]),
             ("false-alarm rate", p["false_alarm_rate"]), ("defects found", d["found"]), ("defects missed", d["missed"]),
             ("false detections", d["false_detections"]), ("pixel AUROC", result["pixel_auroc"]),
             ("AUPRO (FPR <= 0.3)", result["aupro_0.3"])]
    section.evaluation = Evaluation.from_metrics(pixel, confusion=confusion, extra=extra,
                                                 source=output / "evaluation" / "metrics.json")
    section.tables.append(Table("Verdict against the reference masks", ["image", "truth", "verdict", "defects"],
                                [[r["image"], r["truth"], r["verdict"], r["defects"]] for r in result["parts"]]))
    section.facts += [("part recall", fmt(p["recall"])), ("pixel mean IoU", fmt(pixel["mean_iou"]))]
    return section
