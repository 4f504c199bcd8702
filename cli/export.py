"""``segsuite export``: a checkpoint to ONNX or TorchScript."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .common import not_implemented, require_path


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


def export(
    model: Annotated[Path, typer.Option(help="segsuite checkpoint to export")],
    format: Annotated[ExportFormat, typer.Option("--format", help="Target runtime format")] = ExportFormat.onnx,
    output: Annotated[Path | None, typer.Option(help="Output file (default: beside the checkpoint)")] = None,
) -> None:
    """Export a checkpoint to ONNX (dynamic input size) or TorchScript, checked numerically against PyTorch."""
    require_path(model, "checkpoint", kind="file")
    raise not_implemented("export", f"export to {format.value}")
