"""``segsuite export``: a checkpoint to ONNX or TorchScript."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .common import require_path


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


def export(
    model: Annotated[Path, typer.Option(help="segsuite checkpoint to export")],
    format: Annotated[ExportFormat, typer.Option("--format", help="Target runtime format")] = ExportFormat.onnx,
    output: Annotated[Path | None, typer.Option(help="Output file (default: beside the checkpoint)")] = None,
) -> None:
    """Export a checkpoint to ONNX (dynamic input size) or TorchScript, checked numerically against PyTorch.

    The model card travels inside the file; run an ONNX export with ONNX Runtime through
    `segsuite run --model model.onnx` (or --runtime onnx).
    """
    from segsuite.core.export import MAX_ABS_DIFF, MIN_ARGMAX_AGREEMENT, export_model

    from segsuite.core.jobs import refuse_overwrite

    require_path(model, "checkpoint", kind="file")
    if output is not None:
        refuse_overwrite(output, [model], "checkpoint")
    report = export_model(model, format.value, output)
    for check in report["checks"]:
        typer.echo(f"  {check['size'][0]}x{check['size'][1]}: max |logit diff| {check['max_abs_diff']:.2e} "
                   f"(limit {MAX_ABS_DIFF:g}), argmax agreement {100 * check['argmax_agreement']:.3f} % "
                   f"(at least {100 * MIN_ARGMAX_AGREEMENT:g} %)")
    typer.echo(f"wrote {report['output']} ({format.value}, dynamic batch/height/width, inputs padded to a multiple of {report['stride']})")
