"""Atomic file output (write to a temporary name beside the target, then rename) and strict JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary name keeps the target's suffix (libraries such as nibabel and GDAL pick
    the format from it) and carries this process's id (``.NAME.partial-PID-XXXX``), so that a
    later run can tell a killed writer's leftovers from a live one's
    (:func:`segsuite.core.jobs.clean_stale_partials`). On any exception the temporary file is
    removed and ``path`` is left as it was. An operating-system error about the temporary file
    (no permission to write in the folder, a full disk) is reported under ``path``: the hidden
    name means nothing to the user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    prefix = f".{path.name.split('.')[0]}.partial-{os.getpid()}-"
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as exc:  # about the folder or the temporary name, never another file
        raise _about(exc, path, None, always=True) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        renamed = _about(exc, path, tmp_path)
        if renamed is exc:
            raise
        raise renamed from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _about(exc: OSError, path: Path, tmp: Path | None, always: bool = False) -> OSError:
    """``exc`` unchanged when it is one of ours or names another file; else the same kind of
    error naming ``path``."""
    from .errors import SegsuiteError

    if isinstance(exc, SegsuiteError) or exc.errno is None:
        return exc
    named = {str(getattr(exc, "filename", None) or ""), str(getattr(exc, "filename2", None) or "")} - {""}
    hidden = {str(path.parent)} | ({str(tmp)} if tmp is not None else set())
    if named and not named & hidden and not always:  # about some other file (e.g. an input read inside the block)
        return exc
    what = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        what += "; choose another output folder or make this one writable"
    return type(exc)(exc.errno, what, str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(data: Any, fallback: Callable[[Any], Any] | None = None) -> Any:
    """``data`` with every non-finite float (NaN, infinity; Python, numpy scalar or array
    element) turned into ``None`` and numpy values and paths into plain JSON types; any other
    type goes through ``fallback`` (default: a ``TypeError``).

    Strict JSON has no NaN: a metric that is undefined (no pixels of a class) is ``null``.
    """
    import numpy as np

    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if data is None or isinstance(data, (str, int, bool)):
        return data
    if isinstance(data, Mapping):
        return {k if isinstance(k, (str, int, float, bool)) or k is None else str(k): json_safe(v, fallback)
                for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v, fallback) for v in data]
    if isinstance(data, np.ndarray):
        return json_safe(data.tolist(), fallback)
    if isinstance(data, np.generic):
        return json_safe(data.item(), fallback)
    if isinstance(data, Path):
        return str(data)
    if isinstance(data, (set, frozenset)):
        return [json_safe(v, fallback) for v in sorted(data, key=str)]
    if fallback is not None:
        return json_safe(fallback(data))
    raise TypeError(f"{type(data).__name__} is not JSON serialisable")


def dumps(data: Any, fallback: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """Strict JSON text of ``data`` (see :func:`json_safe`): never a bare ``NaN`` or ``Infinity``;
    ``kwargs`` go to :func:`json.dumps`."""
    return json.dumps(json_safe(data, fallback), allow_nan=False, **kwargs)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented strict JSON atomically; non-finite numbers become ``null``."""
    path = Path(path)
    text = dumps(data, indent=2) + "\n"  # before the file is opened: an unserialisable value leaves nothing behind
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
