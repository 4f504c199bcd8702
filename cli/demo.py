"""``segsuite demo``: the end-to-end main job on generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    output: Annotated[Path, typer.Option(help="Folder for the demo outputs")] = Path("segsuite-demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs")] = 6,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for data, split and training")] = 0,
) -> None:
    """Generate labelled sample data, split it, train a U-Net, evaluate it on the test split and
    segment the test images; prints a summary and writes everything under --output."""
    from segsuite.core.demo import run_demo

    summary = run_demo(output, epochs=epochs, device=device, seed=seed, log=lambda m: typer.echo(m, err=True))
    m = summary["test_metrics"]
    typer.echo("")
    typer.echo(summary["table"])
    typer.echo("")
    typer.echo(f"samples: {summary['samples']}   epochs: {summary['epochs']}   time: {summary['seconds']}")
    typer.echo(f"test mIoU {m['mean_iou']:.3f}, accuracy {m['global_accuracy']:.3f}")
    for label, path in summary["files"].items():
        typer.echo(f"  {label:<17} {path}")
    typer.echo(f"summary: {Path(summary['output']) / 'summary.json'}")
