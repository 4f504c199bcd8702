"""Satellite tiling benchmarks: memory against scene size, throughput and overhead.

    .venv/bin/python benchmarks/bench_satellite.py [--sizes 4096,16384] [--workdir DIR]

1. Peak RSS of `tile_raster` on 3-band uint8 scenes of each size (each run in its own
   process, so the numbers do not mix), with a per-pixel model so the machinery, not the
   network, is measured: the streamed design should keep the peak flat.
2. Throughput of the shipped default model on the 4-band sample-like scene of 4096²:
   megapixels per second, and total time over the time spent in the model's forward
   passes on the same windows (reading, blending, writing and the COG copy are the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, resource, sys, time
import numpy as np, torch
from torch import nn
from segsuite.core.infer import Predictor
from segsuite.core.models.base import SegmentationModel
from segsuite.core.classmap import ClassMap
from segsuite.plugins.satellite.tiling import TileOptions, tile_raster
path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
torch.set_num_threads(2)
if mode == "pixel":
    torch.manual_seed(0)
    model = SegmentationModel(nn.Conv2d(3, 5, 1), arch="pix", in_channels=3, num_classes=5, spatial_dims=2, stride=1, encoder_prefix=None)
    pred = Predictor(model, device="cpu", normalization={"kind": "zscore", "mean": [128.0] * 3, "std": [64.0] * 3},
                     class_map=ClassMap(("a", "b", "c", "d", "e")))
else:
    pred = Predictor.from_checkpoint(mode, device="cpu")
t = time.perf_counter()
s = tile_raster(path, pred, out, TileOptions(tile=512, overlap=64, batch=4))
s["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(s))
'''


def make_scene(path: Path, size: int, bands: int) -> None:
    """A size x size scene written block by block (never whole in memory)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    block = 1024
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8" if bands == 3 else "uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4200000, 10, 10), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", BIGTIFF="IF_SAFER") as dst:
        rng = np.random.default_rng(0)
        for y in range(0, size, block):
            for x in range(0, size, block):
                h, w = min(block, size - y), min(block, size - x)
                yy, xx = np.mgrid[y : y + h, x : x + w]
                base = (np.sin(yy / 97.0) + np.cos(xx / 61.0)) * 50 + 128
                data = np.stack([base + rng.normal(0, 8, (h, w)) for _ in range(bands)])
                if bands == 4:
                    data = data * 20
                dst.write(np.clip(data, 0, 255 if bands == 3 else 10000).astype(dst.dtypes[0]), window=Window(x, y, w, h))


def run_child(scene: Path, out: Path, mode: str) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(scene), str(out), mode], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "sample_data" / "satellite" / "model.safetensors"))
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="segsuite-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    peaks = {}
    for size in (int(s) for s in args.sizes.split(",") if s):
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            make_scene(scene, size, 3)
        s = run_child(scene, work / f"out_{size}.tif", "pixel")
        peaks[size] = s["peak_rss_mb"]
        print(f"memory  {size}x{size} 3-band uint8, per-pixel model: peak RSS {s['peak_rss_mb']:.0f} MB, "
              f"{s['megapixels_per_second']:.2f} MP/s, {s['windows']} windows, output {s['format']}")
    if len(peaks) > 1:
        lo, hi = min(peaks.values()), max(peaks.values())
        print(f"memory  peak RSS ratio largest/smallest scene: {hi / lo:.3f}")
    scene = work / "scene_4096_4band.tif"
    if not scene.exists():
        make_scene(scene, 4096, 4)
    s = run_child(scene, work / "out_model.tif", args.model)
    print(f"throughput  4096x4096 4-band, shipped default model, CPU fp32, tile 512, overlap 64, "
          f"batch 4: {s['megapixels_per_second']:.2f} MP/s, {s['seconds']:.1f} s total, model forward {s['model_seconds']:.1f} s, "
          f"total/forward {s['seconds'] / s['model_seconds']:.3f}, peak RSS {s['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import Conditions

    with Conditions():
        main()
