"""What this machine can still give a process: checked before reading inputs whose headers
claim more than fits (images, volumes), so a crafted or truncated file is refused in a
fraction of a second instead of swapping the machine for a minute."""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP_V2 = Path("/sys/fs/cgroup")


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or ``None`` when the system does not say.

    Linux: ``MemAvailable`` from ``/proc/meminfo`` (what the kernel can hand out, page cache
    included), lowered to the container's cgroup limit when there is one. Elsewhere:
    ``os.sysconf`` free physical pages, when the platform has them.
    """
    free = _meminfo_available()
    if free is None:
        try:
            free = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            free = None
    limit = _cgroup_room()
    if limit is not None:
        free = limit if free is None else min(free, limit)
    return free


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """What a cgroup-v2 memory limit still allows: limit minus usage, counting inactive page cache
    as free (the kernel reclaims it before it kills anything). ``None`` without a limit."""
    try:
        limit_text = (_CGROUP_V2 / "memory.max").read_text().strip()
        if limit_text == "max":
            return None
        used = int((_CGROUP_V2 / "memory.current").read_text())
        reclaimable = 0
        for line in (_CGROUP_V2 / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "inactive_file":
                reclaimable = int(value)
        return max(0, int(limit_text) - used + reclaimable)
    except (OSError, ValueError):
        return None


def human_bytes(n: float) -> str:
    """``1.6 GB``, ``512 MB``, ``3 KB`` (powers of 1024, as ``free -h`` shows them)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # not reached
