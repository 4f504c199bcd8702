"""Where the committed sample data and default checkpoints live.

``sample_data/`` sits at the top of the checkout (it is not part of the wheel: it travels
with the repository, like the tests). ``SEGSUITE_SAMPLE_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import SegsuiteError


def sample_data_dir() -> Path:
    env = os.environ.get("SEGSUITE_SAMPLE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "sample_data"


def default_checkpoint(domain: str) -> Path:
    """The shipped default model of a domain, or a one-line error saying what to pass instead."""
    root = sample_data_dir()
    path = root / domain / "model.safetensors"
    if not path.is_file():
        if root.is_dir():  # a source checkout that does not ship this model (yet)
            from .errors import NotImplementedYet

            raise NotImplementedYet(f"segsuite run: no default {domain} model is shipped yet; pass --model CKPT")
        raise SegsuiteError(f"no default {domain} model at {path} (it ships with a source checkout); pass --model CKPT")
    return path


def shipped_model(domain: Any) -> Path:
    """The model a domain runs with when no ``--model`` is given: its ``Sample``'s model when the
    plugin ships one in its own folder (``Sample.root``), else the checkout's default."""
    sample = getattr(domain, "sample", None)
    if sample is not None and sample.root is not None:
        path = Path(sample.root) / sample.model
        if path.is_file():
            return path
    return default_checkpoint(domain.name)
