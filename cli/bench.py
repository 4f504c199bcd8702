"""``segsuite bench``: latency and throughput, always with device, precision, size and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import not_implemented


def bench(
    model: Annotated[str, typer.Option(help="Checkpoint path or registered architecture name")] = "lraspp_mobilenet_v3",
    size: Annotated[str, typer.Option(help="Input size HxW")] = "512x1024",
    batch: Annotated[int, typer.Option(help="Batch size")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    video: Annotated[Path | None, typer.Option(help="Also measure end-to-end FPS on this video")] = None,
) -> None:
    """Measure model-only latency (warm-up, synchronised) and end-to-end FPS."""
    raise not_implemented("bench", "benchmarking")
