"""Industrial inspection: defect masks, per-part OK/NG verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from segsuite.core.data.images import IMAGE_SUFFIXES, read_image
from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import DEFECT, SEVERSTAL, SURFACE
from .demo import demo, run_report  # light: numpy and the report model only
from .synthetic import generate

if TYPE_CHECKING:
    import typer


def run_parts(inputs: list[Path], checkpoint: Path, output: Path | None, *, device: str = "auto",
              threshold: float | None = None, min_area: int | None = None, pixel_size: float | None = None,
              uncertainty: str | None = None) -> list[dict]:
    """``segsuite run industrial``: verdicts, defect lists, masks, heatmaps and overlays (and uncertainty maps)."""
    import typer

    from segsuite.core.errors import SegsuiteError

    from .inspect import inspect_files, summary_table

    records = inspect_files(inputs, checkpoint, output, device=device, threshold=threshold, min_area=min_area,
                            pixel_size=pixel_size, log=lambda m: typer.echo(m, err=True), uncertainty=uncertainty)
    typer.echo(summary_table(records))
    failed = [r for r in records if r["verdict"] == "ERROR"]
    if failed:
        raise SegsuiteError(f"{len(failed)} of {len(records)} image(s) could not be inspected; see summary.csv and the warnings above")
    return records


def evaluate_parts(checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict:
    """``segsuite evaluate industrial``: part-level, defect-level and pixel-level metrics."""
    import typer

    from .metrics import evaluate_parts as run

    r = run(checkpoint, data, output, device=device)
    p, d = r["part_level"], r["defects"]
    typer.echo(f"parts: {p['parts']} at threshold {r['threshold']:.3f}, min area {r['min_area_px']} px")
    typer.echo(f"  recall {p['recall']:.3f}  precision {p['precision']:.3f}  F1 {p['f1']:.3f}  "
               f"false alarms {p['false_alarm_rate']:.3f}  escapes per 1000 parts {p['escapes_per_1000']:.1f}")
    typer.echo(f"defects: {d['found']} found, {d['missed']} missed, {d['false_detections']} false detections")
    typer.echo(f"pixels: AUROC {r['pixel_auroc']:.4f}  AUPRO@0.3 {r['aupro_0.3']:.4f}  "
               f"mIoU {r['pixel_metrics']['mean_iou'] or float('nan'):.4f}")
    if output is not None:
        typer.echo(f"wrote {Path(output) / 'metrics.json'}")
    return r


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="industrial",
            description="Defect segmentation for visual inspection (PNG/JPEG/BMP/TIFF, 8/16-bit)",
            spatial_dims=2,
            in_channels=1,
            class_maps={"surface": SURFACE, "defect": DEFECT, "severstal": SEVERSTAL},
            default_model=ModelSpec("resunet", {"channels": [16, 32, 64, 128], "num_res_units": 1}),
            patch_size=(256, 256),
            readers={s: read_image for s in IMAGE_SUFFIXES},
            outputs=("label mask PNG", "heatmap", "overlay", "JSON verdict with defect list", "summary.csv"),
            runner=run_parts,
            demo=demo,
            run_report=run_report,
            evaluator=evaluate_parts,
            synthetic=generate,
        )
    ]


@hookimpl
def segsuite_cli(app: "typer.Typer") -> None:
    from . import commands

    app.command("calibrate")(commands.calibrate)
