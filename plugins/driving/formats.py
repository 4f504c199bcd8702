"""The labelled street-scene layouts the driving domain reads, and how each is recognised.

Kept apart from :mod:`.datasets` so that discovering the plugin (and detecting a layout)
imports neither torch nor the dataset code; the builders import it when a dataset is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.domain import DatasetFormat

CAMVID_SPLITS = ("train", "val", "test")


def is_cityscapes(root: Path) -> bool:
    """A Cityscapes root: ``leftImg8bit/<split>/<city>/`` (and ``gtFine/`` beside it)."""
    return (Path(root) / "leftImg8bit").is_dir()


def is_camvid(root: Path) -> bool:
    """A CamVid root (SegNet release): at least one ``<split>/`` folder with its ``<split>annot/`` beside it.

    Training looks for ``train``/``trainannot`` and evaluation for ``val``/``valannot``; one
    detector serves both, and the builder names the folder that is missing for its split.
    """
    root = Path(root)
    return any((root / s).is_dir() and (root / f"{s}annot").is_dir() for s in CAMVID_SPLITS)


def is_cityscapes_named(root: Path) -> bool:
    """A folder (not a Cityscapes root) holding ``*_gtFine_labelIds.png`` files somewhere below it,
    paired with ``*_leftImg8bit.png`` frames by name: the shipped sample's layout."""
    root = Path(root)
    return root.is_dir() and not is_cityscapes(root) and next(root.rglob("*_gtFine_labelIds.png"), None) is not None


def cityscapes_dataset(*args: Any, **kwargs: Any) -> Any:
    """Cityscapes layout: leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    from .datasets import cityscapes_format

    return cityscapes_format(*args, **kwargs)


def camvid_dataset(*args: Any, **kwargs: Any) -> Any:
    """CamVid (SegNet release): train/, trainannot/, val/, valannot/."""
    from .datasets import camvid_format

    return camvid_format(*args, **kwargs)


def cityscapes_named_dataset(*args: Any, **kwargs: Any) -> Any:
    """Frames and label-id files with Cityscapes names anywhere below one folder (no splits)."""
    from .datasets import cityscapes_named_format

    return cityscapes_named_format(*args, **kwargs)


FORMATS: dict[str, DatasetFormat] = {
    "cityscapes": DatasetFormat(build=cityscapes_dataset, detect=is_cityscapes),
    "camvid": DatasetFormat(build=camvid_dataset, detect=is_camvid),
}
"""The layouts ``train``/``evaluate``/``split`` can be told to read with ``--format``."""

EVALUATION_FORMATS: dict[str, DatasetFormat] = {
    **FORMATS,
    "cityscapes-named": DatasetFormat(build=cityscapes_named_dataset, detect=is_cityscapes_named),
}
"""What ``segsuite evaluate driving`` recognises: the formats above, then a flat folder of
Cityscapes-named frames and labels (how ``sample_data/driving/`` ships them)."""


def detect_format(root: Path, formats: dict[str, DatasetFormat] = EVALUATION_FORMATS) -> DatasetFormat | None:
    """The first format whose detector accepts ``root`` (``None``: paired folders or a manifest)."""
    root = Path(root)
    if not root.exists():
        return None
    return next((f for f in formats.values() if f.detect is not None and f.detect(root)), None)
