"""The industrial plugin's command: ``segsuite calibrate``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class PolicyChoice(str, Enum):
    recall = "recall"
    far = "far"
    f1 = "f1"


def calibrate(
    model: Annotated[Path, typer.Option(help="Checkpoint to calibrate")],
    data: Annotated[Path, typer.Option(help="Validation parts: images/ and masks/ (all-zero masks for good parts)")],
    policy: Annotated[PolicyChoice, typer.Option(help="recall: reach a part-level recall; far: cap false alarms on good parts; f1: best F1")] = PolicyChoice.recall,
    target: Annotated[Optional[float], typer.Option(help="Recall (e.g. 0.99) or false-alarm rate (e.g. 0.01) to meet")] = None,
    min_area: Annotated[int, typer.Option(help="Smallest defect region in pixels that makes a part NG")] = 10,
    output: Annotated[Optional[Path], typer.Option(help="Write the calibrated checkpoint here (default: update --model in place)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
) -> None:
    """Choose the industrial decision threshold on a validation set and store it, with how it was
    chosen, in the model card; `segsuite run industrial` then uses it by default."""
    from segsuite.core.jobs import require_path
    from segsuite.core.errors import SegsuiteError

    from .calibrate import calibrate as run_calibration

    require_path(model, "checkpoint (--model)", kind="file")
    require_path(data, "validation data (--data)")
    if policy is not PolicyChoice.f1 and target is None:
        raise SegsuiteError(f"--policy {policy.value} needs --target (e.g. {'0.99' if policy is PolicyChoice.recall else '0.01'})")
    result = run_calibration(model, data, policy.value, target, min_area=min_area, output=output, device=device)
    a = result["achieved"]
    typer.echo(f"threshold {result['threshold']:.4f} (min area {min_area} px) -> {result['checkpoint']}")
    typer.echo(f"on {a['parts']} validation parts: recall {a['recall']:.3f}, precision {a['precision']:.3f}, "
               f"false alarms {a['false_alarm_rate']:.3f}, F1 {a['f1']:.3f}")
