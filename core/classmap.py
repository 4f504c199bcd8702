"""Class maps: names, colours, ignore index and raw-id -> train-id remapping.

Datasets often store *label ids* that differ from the contiguous *train ids* a network
predicts (Cityscapes stores 34 label ids, trains on 19 and maps the rest to 255). A
:class:`ClassMap` holds the train classes and, optionally, the table from raw ids to
train ids, so that masks are remapped once on load and predictions can be mapped back
for an official evaluation script.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClassMapError, InputFileError

Color = tuple[int, int, int]


def default_palette(n: int) -> tuple[Color, ...]:
    """Distinct colours by the PASCAL VOC bit-interleaving recipe (class 0 is black)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


@dataclass(frozen=True)
class ClassMap:
    """The classes a model predicts, in train-id order.

    Parameters
    ----------
    names:
        Class names; the position is the train id.
    colors:
        One RGB triple per class; a VOC-style palette when omitted.
    ignore_index:
        Label value excluded from losses and metrics (must not be a class index).
    raw_ids:
        Optional ``{raw label id: train id}``; raw ids not listed map to ``ignore_index``.
        A value may itself be ``ignore_index`` (e.g. Cityscapes "license plate").
    name:
        Name of the convention (``"cityscapes"``, ``"camvid"``...), informational.
    """

    names: tuple[str, ...]
    colors: tuple[Color, ...] = ()
    ignore_index: int = 255
    raw_ids: Mapping[int, int] | None = None
    name: str = ""
    _lut: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        label = f"class map {self.name!r}" if self.name else "class map"
        if not names:
            raise ClassMapError(f"{label}: needs at least one class name")
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            if not n.strip():
                raise ClassMapError(f"{label}: class {i} has an empty name")
            if n in seen:
                raise ClassMapError(f"{label}: duplicate class name {n!r} (ids {seen[n]} and {i})")
            seen[n] = i
        colors = tuple(self.colors) if self.colors else default_palette(len(names))
        if len(colors) != len(names):
            raise ClassMapError(f"{label}: {len(colors)} colours for {len(names)} classes")
        checked = []
        for i, c in enumerate(colors):
            c = tuple(c)
            if len(c) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in c):
                raise ClassMapError(f"{label}: colour of {names[i]!r} must be three integers 0-255, got {c!r}")
            checked.append((int(c[0]), int(c[1]), int(c[2])))
        object.__setattr__(self, "colors", tuple(checked))
        if not isinstance(self.ignore_index, (int, np.integer)):
            raise ClassMapError(f"{label}: ignore_index must be an integer")
        if 0 <= self.ignore_index < len(names):
            raise ClassMapError(
                f"{label}: ignore_index {self.ignore_index} collides with class {names[self.ignore_index]!r}; "
                f"use a value outside 0..{len(names) - 1} (255 is usual)"
            )
        if self.raw_ids is not None:
            table: dict[int, int] = {}
            for raw, train in dict(self.raw_ids).items():
                if not isinstance(raw, (int, np.integer)) or raw < 0:
                    raise ClassMapError(f"{label}: raw label id {raw!r} must be a non-negative integer")
                if not (0 <= train < len(names) or train == self.ignore_index):
                    raise ClassMapError(
                        f"{label}: raw id {raw} maps to train id {train}, outside 0..{len(names) - 1} "
                        f"and not the ignore index {self.ignore_index}"
                    )
                table[int(raw)] = int(train)
            object.__setattr__(self, "raw_ids", table)
            lut = np.full(max(table) + 1 if table else 1, self.ignore_index, dtype=np.int64)
            for raw, train in table.items():
                lut[raw] = train
            object.__setattr__(self, "_lut", lut)

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        rows: Iterable[tuple[int, str, int] | tuple[int, str, int, Sequence[int]]],
        *,
        ignore_index: int = 255,
        name: str = "",
    ) -> "ClassMap":
        """Build from ``(raw_id, name, train_id[, colour])`` rows, as in Cityscapes' labels table.

        Rows whose train id is ``ignore_index`` only feed the remapping. Each train id must
        be named by one row (several raw ids may share a train id if their names agree on
        the first row seen). Duplicate raw ids are an error.
        """
        raw_ids: dict[int, int] = {}
        train_names: dict[int, str] = {}
        train_colors: dict[int, Color] = {}
        for row in rows:
            raw, cname, train = int(row[0]), str(row[1]), int(row[2])
            if raw in raw_ids:
                raise ClassMapError(f"class map {name!r}: duplicate raw label id {raw}")
            raw_ids[raw] = train
            if train != ignore_index and train not in train_names:
                train_names[train] = cname
                if len(row) > 3:
                    train_colors[train] = tuple(row[3])  # type: ignore[assignment]
        if not train_names:
            raise ClassMapError(f"class map {name!r}: no row has a train id")
        n = max(train_names) + 1
        missing = sorted(set(range(n)) - set(train_names))
        if missing:
            raise ClassMapError(f"class map {name!r}: train ids {missing} have no row; train ids must be contiguous from 0")
        names = tuple(train_names[i] for i in range(n))
        colors = tuple(train_colors[i] for i in range(n)) if len(train_colors) == n else ()
        return cls(names=names, colors=colors, ignore_index=ignore_index, raw_ids=raw_ids, name=name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "class map") -> "ClassMap":
        try:
            raw = data.get("raw_ids")
            return cls(
                names=tuple(data["names"]),
                colors=tuple(tuple(c) for c in data.get("colors", ())),
                ignore_index=int(data.get("ignore_index", 255)),
                raw_ids={int(k): int(v) for k, v in raw.items()} if raw else None,
                name=str(data.get("name", "")),
            )
        except ClassMapError as exc:
            raise ClassMapError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClassMapError(f"{source}: not a valid class map ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ClassMap":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputFileError(f"{path}: class map file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{path}: cannot read class map JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_names(cls, names: str | Sequence[str], **kwargs: Any) -> "ClassMap":
        """From a comma-separated string (as given on the command line) or a list."""
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        return cls(names=tuple(names), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "names": list(self.names),
            "colors": [list(c) for c in self.colors],
            "ignore_index": self.ignore_index,
        }
        if self.raw_ids is not None:
            out["raw_ids"] = {str(k): v for k, v in sorted(self.raw_ids.items())}
        return out

    # -- queries ------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ClassMapError(f"unknown class {name!r}; known: {', '.join(self.names)}") from None

    # -- conversions --------------------------------------------------------------
    def to_train_ids(self, raw: Any) -> Any:
        """Map a raw label array (NumPy or torch) to train ids; unknown ids become ignore."""
        if self._lut is None:
            return raw
        lut = self._lut
        if isinstance(raw, np.ndarray):
            flat = raw.astype(np.int64, copy=False)
            out = np.full(flat.shape, self.ignore_index, dtype=np.int64)
            ok = (flat >= 0) & (flat < lut.shape[0])
            out[ok] = lut[flat[ok]]
            return out
        import torch

        t = raw.long()
        lut_t = torch.as_tensor(lut, device=t.device)
        ok = (t >= 0) & (t < lut_t.shape[0])
        return torch.where(ok, lut_t[t.clamp(0, lut_t.shape[0] - 1)], torch.full_like(t, self.ignore_index))

    def to_raw_ids(self, train: np.ndarray) -> np.ndarray:
        """Inverse mapping for evaluation scripts that expect raw ids (first raw id of each class)."""
        if self.raw_ids is None:
            return train
        inverse = np.zeros(max(self.num_classes, self.ignore_index + 1), dtype=np.int64)
        for raw, tr in sorted(self.raw_ids.items(), reverse=True):
            if tr != self.ignore_index:
                inverse[tr] = raw
        ignore_raw = min((r for r, t in self.raw_ids.items() if t == self.ignore_index), default=0)
        inverse[self.ignore_index] = ignore_raw
        return inverse[train.astype(np.int64)]

    def colorize(self, labels: np.ndarray, ignore_color: Color = (0, 0, 0)) -> np.ndarray:
        """An RGB uint8 picture of a label array (any shape ``(...)`` -> ``(..., 3)``)."""
        palette = np.zeros((max(self.num_classes, self.ignore_index + 1), 3), dtype=np.uint8)
        palette[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        palette[self.ignore_index] = ignore_color
        lab = np.asarray(labels).astype(np.int64)
        lab = np.where((lab >= 0) & (lab < palette.shape[0]), lab, self.ignore_index)
        return palette[lab]
