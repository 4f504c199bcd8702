"""What C libraries print straight to the process's stderr, caught and put in our words.

libpng, inside OpenCV, writes ``libpng warning: iCCP: known incorrect sRGB profile`` to file
descriptor 2 itself: OpenCV installs no warning handler and has no setting for it, so neither
``OPENCV_LOG_LEVEL`` nor Python's ``warnings`` can reach it. :func:`library_chatter` points
descriptor 2 at a temporary file for the length of one call and then sorts what was written:

* libpng warnings about *ancillary* chunks (PNG chunk names starting with a lower-case letter:
  colour profiles, text, timestamps) are dropped: OpenCV does not use those chunks, so the
  pixels are exactly what they would be without them;
* any other libpng warning becomes one :class:`LibraryWarning` naming the file (libpng errors
  stop the decoder, and the caller's own one-line error says the file is unreadable);
* everything else (another thread's output that happened to land in the window) is written
  back to stderr unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

_LIBPNG = re.compile(r"^libpng (warning|error): (.*)$")
_ANCILLARY = re.compile(r"^[a-z][A-Za-z]{3}: ")  # e.g. "iCCP: too short", "tEXt: ..."
_LOCK = threading.Lock()  # descriptor 2 is one per process: one capture at a time


class LibraryWarning(UserWarning):
    """A C library's complaint about an input that was still read (shown as one line by the CLI)."""


def _new_lock() -> None:
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # a DataLoader worker forked mid-capture must not inherit a held lock
    os.register_at_fork(after_in_child=_new_lock)


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
    """Redirect file descriptor 2 to a temporary file inside the block; the list yielded is
    filled with the lines written there when the block ends. Without a usable descriptor 2
    nothing is redirected (and the list stays empty)."""
    lines: list[str] = []
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield lines
            return
        try:
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), 2)
                try:
                    yield lines
                finally:
                    os.dup2(saved, 2)
                    tmp.seek(0)
                    lines.extend(tmp.read().decode("utf-8", "replace").splitlines())
        finally:
            os.close(saved)


@contextlib.contextmanager
def library_chatter(source: str | Path) -> Iterator[None]:
    """Run the block (a decoder call on ``source``) with C-level stderr captured and sorted as
    the module docstring says."""
    lines: list[str] = []
    try:
        with captured_stderr_fd() as lines:
            yield
    finally:  # also when the decoder raised: another thread's lines must not be lost
        _sort(lines, source)


def _sort(lines: list[str], source: str | Path) -> None:
    passthrough = []
    for line in lines:
        match = _LIBPNG.match(line.strip())
        if match is None:
            if line.strip():
                passthrough.append(line)
            continue
        kind, message = match.group(1), match.group(2).strip()
        # an error stops the decoder, and the caller reports the unreadable file in one line
        if kind == "warning" and not _ANCILLARY.match(message):
            warnings.warn(f"{source}: libpng: {message}", LibraryWarning, stacklevel=2)
    if passthrough:
        with contextlib.suppress(OSError, ValueError):
            os.write(2, ("\n".join(passthrough) + "\n").encode("utf-8", "replace"))
