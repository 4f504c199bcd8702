"""Partitioning: train/val/test by ratio or k folds, reproducible, never splitting a group.

A *group* is what must not leak between splits: a patient in medical data, a scene or
drive in street data, a tile region in remote sensing. Groups come from the manifest's
``group`` column or from a regular expression on the file name whose first capture group
(or whole match) is the group id. Groups are assigned largest first, each to the split
furthest below its target share, which keeps the ratios close even with uneven groups.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ..errors import SegsuiteError
from .datasets import Pair

SPLIT_NAMES = ("train", "val", "test")


def parse_ratios(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.7,0.15,0.15"`` -> shares of train, val (and test) that sum to 1; a one-line error for
    anything else (not numbers, NaN or infinity, negative, more than three, all zero)."""
    shown = text if isinstance(text, str) else ",".join(map(str, text))
    try:
        vals = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise SegsuiteError(f"--ratios {shown}: must be numbers like 0.7,0.15,0.15") from None
    if not 1 <= len(vals) <= 3 or not all(math.isfinite(v) and v >= 0 for v in vals) or sum(vals) <= 0:
        raise SegsuiteError(f"--ratios {shown}: give up to three non-negative fractions (train,val,test) "
                            "that are not all zero, e.g. 0.7,0.15,0.15")
    total = sum(vals)
    return tuple(v / total for v in vals)


def check_folds(folds: int) -> int:
    """``folds`` when it can make a cross-validation (at least 2 folds), else a one-line error."""
    if folds < 2:
        raise SegsuiteError(f"--folds {folds}: cross-validation needs at least 2 folds (or leave --folds out "
                            "for a train/val/test split)")
    return folds


def group_pairs(pairs: Sequence[Pair], group_by: str | None = None) -> "OrderedDict[str, list[Pair]]":
    pattern = None
    if group_by:
        try:
            pattern = re.compile(group_by)
        except re.error as exc:
            raise SegsuiteError(f"--group-by {group_by!r} is not a valid regular expression ({exc})") from None
    groups: OrderedDict[str, list[Pair]] = OrderedDict()
    for p in pairs:
        if pattern is not None:
            m = pattern.search(p.image.name)
            if m is None:
                raise SegsuiteError(f"{p.image}: --group-by pattern {group_by!r} does not match this file name")
            key = m.group(1) if m.groups() else m.group(0)
        else:
            key = p.group or p.image.stem
        groups.setdefault(key, []).append(Pair(p.image, p.mask, key))
    return groups


def _order(groups: "OrderedDict[str, list[Pair]]", seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = list(groups)
    rng.shuffle(keys)
    return sorted(keys, key=lambda k: -len(groups[k]))  # stable: shuffled order breaks ties


def split_pairs(pairs: Sequence[Pair], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                group_by: str | None = None) -> dict[str, list[Pair]]:
    ratios = parse_ratios(ratios)
    names = SPLIT_NAMES[: len(ratios)]
    groups = group_pairs(pairs, group_by)
    wanted = [n for n, r in zip(names, ratios) if r > 0]
    if len(groups) < len(wanted):
        raise SegsuiteError(f"{len(groups)} group(s) cannot fill {len(wanted)} non-empty splits")
    total = sum(len(v) for v in groups.values())
    targets = {n: r * total for n, r in zip(names, ratios)}
    out: dict[str, list[Pair]] = {n: [] for n in names}
    order = _order(groups, seed)
    # first give every non-empty split one group, smallest targets first, so none ends up empty
    for name in sorted(wanted, key=lambda n: targets[n]):
        key = order.pop()  # the smallest remaining group
        out[name].extend(groups[key])
    for key in order:
        name = max(wanted, key=lambda n: (targets[n] - len(out[n])) / max(targets[n], 1e-9))
        out[name].extend(groups[key])
    return {n: sorted(v, key=lambda p: str(p.image)) for n, v in out.items()}


def kfold_pairs(pairs: Sequence[Pair], folds: int, seed: int = 0, group_by: str | None = None) -> list[dict[str, list[Pair]]]:
    check_folds(folds)
    groups = group_pairs(pairs, group_by)
    if len(groups) < folds:
        raise SegsuiteError(f"{len(groups)} group(s) cannot make {folds} folds")
    buckets: list[list[Pair]] = [[] for _ in range(folds)]
    for key in _order(groups, seed):
        min(buckets, key=len).extend(groups[key])
    result = []
    for i in range(folds):
        train = [p for j, b in enumerate(buckets) if j != i for p in b]
        result.append({"train": sorted(train, key=lambda p: str(p.image)), "val": sorted(buckets[i], key=lambda p: str(p.image))})
    return result
