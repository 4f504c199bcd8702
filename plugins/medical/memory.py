"""How much memory a volume may take, decided before any voxel is read.

A NIfTI header is 348 (NIfTI-1) or 540 (NIfTI-2) bytes that may claim any shape: a 1.4 KB
file can declare 2000³ voxels, and reading it would allocate 16 GB before nibabel notices
that the data is not there. The medical reader therefore sizes every read from the header
alone and refuses, in a fraction of a second, what cannot fit in the memory the machine
has left.
"""

from __future__ import annotations

from pathlib import Path

from segsuite.core.errors import InputFileError
from segsuite.core.resources import available_memory, human_bytes

__all__ = ["available_memory", "check_fits", "human_bytes"]

def check_fits(path: Path, needed: int, what: str) -> None:
    """A one-line :class:`InputFileError` when ``needed`` bytes (for ``what``) exceed the memory available.

    When the system does not say how much is available the check is skipped: refusing a volume
    on a guess would be worse than letting the allocation fail.
    """
    free = available_memory()
    if free is not None and needed > free:
        raise InputFileError(f"{path}: {what} needs about {human_bytes(needed)} of memory and "
                             f"{human_bytes(free)} is available; crop or downsample the volume, or use a machine "
                             "with more memory")
