"""What `segsuite run microscopy` does with one image: segment it and count the cells.

A cell is a connected region of cytoplasm or nucleus pixels (8-connected). The option
``--min-cell-area N`` is declared here, so segsuite lists it in ``segsuite run microscopy
--help`` and checks it (a whole number, at least 0) before any image is read; regions
smaller than N pixels are debris and are not counted. Everything around one image (input
expansion, output names, failures, summary.json) is segsuite's executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segsuite.core.pipeline import BasePipeline, RunContext, RunOption

MIN_CELL_AREA = RunOption("min_cell_area", int, 0, minimum=0,
                          help="Do not count cells smaller than this many pixels (debris)")


class CellCountPipeline(BasePipeline):
    """Per image: ``NAME_labels.png`` (class indices) and ``NAME.json`` (the cell count)."""

    name = "microscopy"  # BasePipeline.load gives run_one a 2D Predictor of the checkpoint
    options = (MIN_CELL_AREA,)
    suffixes = (".tif", ".png")
    default_output = Path("microscopy-results")

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        """The label image and the record of one input."""
        return {"labels": folder / f"{stem}_labels.png", "record": folder / f"{stem}.json"}

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        """Segment, write the labels, count the cells of at least ``--min-cell-area`` pixels."""
        import cv2
        import numpy as np

        from segsuite.core.data.images import read_image, write_image

        labels = context.model.predict(read_image(source).array)[0].cpu().numpy().astype(np.uint8)
        write_image(outputs["labels"], labels)
        _, _, stats, _ = cv2.connectedComponentsWithStats((labels > 0).astype(np.uint8), connectivity=8)
        areas = sorted(int(a) for a in stats[1:, cv2.CC_STAT_AREA])  # row 0 is the background
        smallest = context.options["min_cell_area"]
        kept = [a for a in areas if a >= smallest]
        return {"input": str(source), "size": list(labels.shape), "min_cell_area": smallest,
                "cells": len(kept), "ignored_regions": len(areas) - len(kept), "cell_areas": kept}

    def describe(self, record: Mapping[str, Any]) -> str:
        """``cells.png: 3 cell(s) of at least 5 px (2 smaller region(s) ignored)``."""
        return (f"{Path(record['input']).name}: {record['cells']} cell(s) of at least {record['min_cell_area']} px "
                f"({record['ignored_regions']} smaller region(s) ignored)")
