"""The one parser for ``--device`` strings, shared by every command and by the Python API.

It checks the spelling only (no torch import, so the CLI can refuse ``--device tpu`` before
anything is loaded or written); whether a CUDA device is actually there is asked when the
device is resolved (:func:`segsuite.core.trainer.resolve_device`).
"""

from __future__ import annotations

import re

from .errors import SegsuiteError

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """``text`` normalised (``"CUDA:0 "`` -> ``"cuda:0"``), or a one-line :class:`SegsuiteError`.

    torch itself would accept dozens of backend names (``xla``, ``meta``, ...) that segsuite does
    not run on, and raises a multi-line ``RuntimeError`` for anything else.
    """
    name = str(text).strip().lower()
    if not _DEVICE.match(name):
        if name.startswith("cuda:"):
            raise SegsuiteError(f"--device {text}: the GPU index must be a whole number, e.g. cuda:0")
        raise SegsuiteError(f"--device {text}: not a device segsuite can run on; use {DEVICE_HELP}")
    return name
