"""Planning the row bands of a scene split between workers (no cluster needed): every scene row
is written by exactly one band, and every window that covers a band's rows is inside its halo."""

from __future__ import annotations

import pytest

from segsuite.plugins.satellite.bands import halo_start, plan_bands
from segsuite.plugins.satellite.tiling import TileOptions, window_starts


@pytest.mark.parametrize("height, tile, overlap", [(512, 64, 16), (1000, 96, 48), (777, 64, 0), (300, 100, 90),
                                                   (8192, 512, 64), (130, 64, 63)])
@pytest.mark.parametrize("count", [2, 3, 5, 64])
def test_bands_partition_the_rows_and_hold_every_window_that_covers_them(height, tile, overlap, count):
    options = TileOptions(tile=tile, overlap=overlap)
    plan = plan_bands(height, 256, options, workers=2, requested=count)
    ys = window_starts(height, min(tile, height), tile - overlap)
    assert plan is not None and len(plan) == min(count, len(ys))
    written = []
    for first, own, end in plan:
        row0 = 0 if own == 0 else ys[own]
        row1 = ys[end] if end < len(ys) else height
        written += range(row0, row1)
        for row in range(row0, row1):
            covering = [j for j, y in enumerate(ys) if y <= row < y + min(tile, height)]
            assert covering and first <= min(covering) and max(covering) < end, (row, covering, first, own, end)
        assert first == halo_start(ys, own, min(tile, height))
    assert written == list(range(height))


def test_when_a_scene_is_split():
    opts = TileOptions(tile=64, overlap=16)
    assert plan_bands(512, 512, opts, workers=1, requested=None) is None  # one worker: whole
    assert len(plan_bands(512, 512, opts, workers=2, requested=None)) == 2
    assert len(plan_bands(512, 512, opts, workers=8, requested=None)) == 5  # 11 window rows, halo 1: 2 rows a band
    assert plan_bands(64, 512, opts, workers=4, requested=None) is None  # one window row
    assert plan_bands(512, 512, opts, workers=2, requested=1) is None
    assert plan_bands(512, 512, TileOptions(tile=64, overlap=16, uncertainty="mcdropout"), workers=4, requested=3) is None
