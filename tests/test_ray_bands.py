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


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{"probabilities": True, "uncertainty": "tta"}, {"cog": False, "uncertainty": "entropy"}])
def test_bands_run_here_and_joined_equal_one_pass(tmp_path, extra):
    """The split, the bands and the join without a cluster (the same calls a Ray worker and the
    driver make): every raster and the record equal :func:`tile_raster`'s."""
    from pathlib import Path

    import numpy as np
    import rasterio

    from segsuite.core.jobs import PlannedInput
    from segsuite.core.pipeline import RunContext, check_options
    from segsuite.core.sample_data import default_checkpoint
    from segsuite.plugins.satellite.pipeline import TilingPipeline
    from segsuite.plugins.satellite.synthetic import render_scene, write_scene

    image, _ = render_scene(np.random.default_rng(31), (256, 224))
    scene = write_scene(tmp_path / "s.tif", image)
    pipeline = TilingPipeline()
    options = check_options(pipeline.options, {"tile": 64, "overlap": 16, "batch": 2, **extra})
    checkpoint = default_checkpoint("satellite")
    model = pipeline.load(checkpoint, options, "cpu")
    context = RunContext(model=model, options=options, checkpoint=checkpoint, device="cpu", output=None)
    one = pipeline.outputs(scene, "s", tmp_path / "one", options)
    split = pipeline.outputs(scene, "s", tmp_path / "split", options)
    (tmp_path / "split").mkdir()  # the executor makes the output folders before any work
    expected = pipeline.run_one(scene, one, context)
    parts = pipeline.split(PlannedInput(scene, "s", split), options, workers=2, requested=4)
    assert len(parts) == 4
    results = [pipeline.run_part(part, context) for part in parts]
    driver = RunContext(model=None, options=options, checkpoint=checkpoint, device="cpu", output=None)
    record = pipeline.join(PlannedInput(scene, "s", split), parts, results, driver)
    pipeline.discard(parts)
    timing = {"seconds", "model_seconds", "megapixels_per_second"}
    strip = lambda r: {k: v for k, v in r.items() if k not in timing | {"output", "probabilities", "uncertainty"}}  # noqa: E731
    assert strip(record) == strip(expected)
    assert record.get("uncertainty", {}).get("mean") == expected["uncertainty"]["mean"]
    for key in ("classes", "probabilities", "uncertainty"):
        if key in one:
            with rasterio.open(one[key]) as a, rasterio.open(split[key]) as b:
                assert np.array_equal(a.read(), b.read()), key
                assert a.profile == b.profile and a.tags(1) == b.tags(1)
    assert not list(Path(tmp_path / "split").glob(".*partial*")), "band parts left behind"
