"""Satellite tiling benchmarks: memory against scene size, throughput and overhead.

    .venv/bin/python benchmarks/bench_satellite.py [--sizes 4096,16384] [--workdir DIR]

1. Peak RSS of `tile_raster` on 3-band uint8 scenes of each size (each run in its own
   process, so the numbers do not mix), with a per-pixel model so the machinery, not the
   network, is measured: the streamed design should keep the peak flat.
2. Tiling against the bare network, shipped default model, 4-band 4096² scene, tile 512,
   overlap 64, batch 4 (81 windows), in interleaved rounds (``--rounds``), medians of the
   per-round ratios:
   - *bare forward*: the same 81 windows, cut out and normalised beforehand, through the
     network as built from the checkpoint, 4 at a time on torch's default threads (a plain
     loop: what a user would write);
   - *engine forward*: the same windows through ``Predictor.map_batches`` (the layout and CPU
     streams the tiler uses), still without reading, blending or writing;
   - *in-tool*: ``tile_raster`` in the same process (reading, normalising, blending, argmax,
     writing and the COG copy included);
   - *end to end*: ``segsuite tile SCENE --output OUT`` from process start to exit.
   Each round's bare and engine forwards and in-tool time come from one fresh process (after a
   warm-up of each), and the end-to-end run follows it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RATIO = r'''
import json, sys, time
import numpy as np, rasterio, torch
from segsuite.core.checkpoint import load_checkpoint
from segsuite.core.infer import Predictor
from segsuite.plugins.satellite.tiling import TileOptions, tile_raster, window_starts
scene, out, model_path = sys.argv[1:4]
pred = Predictor.from_checkpoint(model_path, device="cpu")
plain = load_checkpoint(model_path).build_model().eval()  # as built, not the Predictor's layout
with rasterio.open(scene) as src:
    data = src.read(out_dtype="float32")
norm = pred.normalization
data = (data - np.float32(norm["mean"]).reshape(-1, 1, 1)) / np.float32(norm["std"]).reshape(-1, 1, 1)
ys, xs = window_starts(data.shape[1], 512, 448), window_starts(data.shape[2], 512, 448)
windows = [torch.from_numpy(np.ascontiguousarray(data[:, y : y + 512, x : x + 512])) for y in ys for x in xs]
per = pred.stream_batch(4)
batches = [torch.stack(windows[i : i + 4]) for i in range(0, len(windows), 4)]
engine_batches = [torch.stack(windows[i : i + per]) for i in range(0, len(windows), per)]

def bare():
    t = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            plain(b)
    return time.perf_counter() - t

def engine():
    t = time.perf_counter()
    for _ in pred.map_batches((None, b) for b in engine_batches):
        pass
    return time.perf_counter() - t

def tool():
    t = time.perf_counter()
    s = tile_raster(scene, pred, out, TileOptions(tile=512, overlap=64, batch=4))
    return time.perf_counter() - t, s["windows"]

for fn in (bare, engine, tool):
    fn()  # warm-up
result = {"bare": bare(), "engine": engine()}
result["tool"], result["windows"] = tool()
result["streams"], result["layout"] = pred.stream_count(), str(pred.memory_format or "contiguous")
print(json.dumps(result))
'''

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


def run_json(args: list[str]) -> dict:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_tiling(scene: Path, work: Path, model: str, rounds: int) -> None:
    """Bare and engine forwards, in-tool and end-to-end tiling, interleaved (see the docstring)."""
    import time

    from conditions import median_ratio, spread

    segsuite = str(Path(sys.executable).with_name("segsuite"))
    runs: dict[str, list[float]] = {"bare": [], "engine": [], "tool": [], "cli": []}
    for _ in range(rounds):
        r = run_json(["-c", RATIO, str(scene), str(work / "out_tool.tif"), model])
        for key in ("bare", "engine", "tool"):
            runs[key].append(r[key])
        t0 = time.perf_counter()
        done = subprocess.run([segsuite, "tile", str(scene), "--output", str(work / "out_cli.tif"), "--model", model],
                              capture_output=True, text=True)
        runs["cli"].append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
    print(f"tiling  4096x4096 4-band, shipped default model, CPU fp32, tile 512, overlap 64, batch 4, {r['windows']} windows, "
          f"{rounds} rounds, median (min-max): bare forward {spread(runs['bare'])} s, engine forward ({r['layout']}, "
          f"{r['streams']} streams) {spread(runs['engine'])} s, in-tool {spread(runs['tool'])} s "
          f"({4096 * 4096 / 1e6 / sorted(runs['tool'])[len(runs['tool']) // 2]:.2f} MP/s), "
          f"end to end {spread(runs['cli'])} s")
    print(f"tiling  ratios: in-tool/bare {median_ratio(runs['tool'], runs['bare']):.3f}, "
          f"end-to-end/bare {median_ratio(runs['cli'], runs['bare']):.3f}, "
          f"engine/bare {median_ratio(runs['engine'], runs['bare']):.3f}, "
          f"in-tool/engine {median_ratio(runs['tool'], runs['engine']):.3f}, "
          f"end-to-end/engine {median_ratio(runs['cli'], runs['engine']):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--rounds", type=int, default=5)
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
    bench_tiling(scene, work, args.model, args.rounds)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import Conditions

    with Conditions():
        main()
