"""``segsuite demo``: every domain on its shipped sample, plus a short training run, in one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def demo(
    output: Annotated[Path, typer.Option(help="Folder for the report (index.html) and every output it shows")] = Path("segsuite-demo"),
    domains: Annotated[Optional[str], typer.Option(help="Comma-separated domains to run (default: every installed one)")] = None,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Also run the generic train/evaluate/run workflow on generated shapes (about a minute)")] = True,
    epochs: Annotated[int, typer.Option(help="Training epochs of that workflow")] = 6,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for the generated data, split and training")] = 0,
) -> None:
    """Run every installed domain's shipped default model on its sample data (satellite scene tiled,
    industrial parts judged OK/NG, driving frames and video, medical volume), score each against the
    sample labels, train a small U-Net on generated shapes, and write a self-contained HTML report,
    OUTPUT/index.html, with inputs, overlays, class legends, domain reports and metrics."""
    from segsuite.core.demo import run_demo
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.report import relative_to_cwd

    if epochs < 1:
        raise SegsuiteError(f"--epochs {epochs} must be at least 1")
    chosen = [d.strip() for d in domains.split(",") if d.strip()] if domains is not None else None
    summary = run_demo(output, device=device, domains=chosen, train=train, epochs=epochs, seed=seed,
                       log=lambda m: typer.echo(m, err=True))
    typer.echo("")
    typer.echo(summary["text"])
    typer.echo("")
    typer.echo(f"report: {relative_to_cwd(Path(summary['report']))}   (open it in a browser; summary.json beside it)")
    if summary["failed"]:
        raise SegsuiteError(f"demo: {', '.join(summary['failed'])} failed; the report says why")
