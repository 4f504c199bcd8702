"""Where the committed sample data and default checkpoints live.

``sample_data/`` sits at the top of the checkout (it is not part of the wheel: it travels
with the repository, like the tests). ``SEGSUITE_SAMPLE_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

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
