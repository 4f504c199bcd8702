"""The same jobs on the local engine, on Ray with one worker and on Ray with two workers.

    .venv/bin/python benchmarks/bench_distributed.py [--workdir DIR] [--jobs industrial,medical,satellite]
                                                      [--industrial 48] [--medical 6] [--scene 8192] [--rounds 3]

Jobs (data made by the plugins' committed generators, once, under --workdir):

* ``industrial``: 48 grey parts of 1024², ``segsuite run industrial``;
* ``medical``: 6 CT-like phantoms (1 x 1 x 2 mm voxels, about 320 x 240 x 100), ``segsuite run medical``;
* ``satellite``: one 8192² 4-band scene, ``segsuite tile`` (tile 512, overlap 64); with two
  workers the scene is split into two bands of rows.

Each job runs through :func:`segsuite.core.jobs.run_job` in this process, so every engine
pays for the same planning, summary and outputs; the Ray runs join one local cluster started
once (its start-up is printed apart: a user's cluster is already up), and each Ray run starts
its own workers, which import torch and load the model (the engine's real overhead). The three
engines run in interleaved rounds (local, Ray-1, Ray-2, local, ...). Printed: seconds per engine
(median and range), Ray-1 / local (target at most 1.15) and Ray-1 / Ray-2 (the speed-up of a
second worker; target at least 1.6 on the many-file jobs) as medians of the per-round ratios,
each worker's peak memory, whether the outputs equal the local engine's, and the machine and
its load average before and after each run. (Not ``conditions.py``'s share of other processes:
Ray's workers are not this process's waited-for children, so they would count as others.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from segsuite.core.engines import EngineSettings, PipelineRecipe, make_engine
from segsuite.core.jobs import Job, JobConsole, run_job
from segsuite.core.pipeline import check_options
from segsuite.core.sample_data import default_checkpoint

TARGET_OVERHEAD, TARGET_SPEEDUP = 1.15, 1.6


def make_industrial(folder: Path, n: int) -> Path:
    from segsuite.plugins.industrial.synthetic import make_parts

    images = folder / "images"
    if len(list(images.glob("*.png"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        make_parts(folder, n=n, size=(1024, 1024), seed=21)
    return images


def make_medical(folder: Path, n: int, spacing: tuple[float, float, float] = (1.0, 1.0, 2.0)) -> Path:
    """``n`` phantoms on a CT-like grid (the generator's default grid is 4-7 mm, a few hundred
    thousand voxels: far too small to time an engine with)."""
    import numpy as np

    from segsuite.plugins.medical.synthetic import write_case

    images = folder / "imagesTr"
    if len(list(images.glob("*.nii.gz"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        for i in range(n):
            write_case(images / f"ct_{i:03d}.nii.gz", None, np.random.default_rng([22, i]), spacing=spacing)
    return images


def make_scene(path: Path, size: int, block: int = 2048) -> Path:
    """A ``size``² 4-band scene from the satellite generator, rendered and written block by block."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from segsuite.plugins.satellite.synthetic import CRS, PIXEL, render_scene

    if path.is_file():
        return path
    tmp = path.with_name(path.name + ".tmp.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs=CRS, nodata=0,
                   transform=from_origin(500000.0, 4100000.0, PIXEL, PIXEL), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    rng = np.random.default_rng(23)
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(0, size, block):
            for x in range(0, size, block):
                h, w = min(block, size - y), min(block, size - x)
                image, _ = render_scene(rng, (h, w), nodata_border=(x == 0))
                dst.write(image, window=Window(x, y, w, h))
    os.replace(tmp, path)
    return path


def job_for(name: str, inputs: list[Path], output: Path) -> Job:
    if name == "satellite":
        recipe = PipelineRecipe("segsuite.plugins.satellite.pipeline:TilingPipeline")
        given = {"tile": 512, "overlap": 64}
    else:
        recipe = PipelineRecipe("segsuite.cli.run:pipeline_for_domain", (name,))
        given = {}
    pipeline = recipe.build()
    return Job(pipeline=pipeline, inputs=inputs, checkpoint=default_checkpoint(name), output=output,
               options=check_options(pipeline.options, given), device="cpu", command=f"bench {name}", recipe=recipe)


def timed(name: str, inputs: list[Path], output: Path, settings: EngineSettings) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    engine = make_engine(settings)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run_job(job_for(name, inputs, output), engine=engine, console=JobConsole(quiet=True))
    seconds = time.perf_counter() - t0
    failed = [r.error for r in result.results if r.status != "ok"]
    if failed:
        raise SystemExit(f"{name} on {settings.kind}: {len(failed)} input(s) failed: {failed[0]}")
    return {"seconds": round(seconds, 2), "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "worker_peak_rss_mb": [round(m) for m in getattr(engine, "peak_rss_mb", [])]}


def same_outputs(a: Path, b: Path) -> bool:
    """Class rasters pixel for pixel, every other non-JSON output byte for byte."""
    import numpy as np
    import rasterio

    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix not in (".json", ".csv"))
    for rel in files:
        if not (b / rel).is_file():
            return False
        if rel.suffix == ".tif":
            with rasterio.open(a / rel) as x, rasterio.open(b / rel) as y:
                if not np.array_equal(x.read(), y.read()):
                    return False
        elif (a / rel).read_bytes() != (b / rel).read_bytes():
            return False
    return bool(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segsuite-bench-distributed",
                        help="where the generated inputs and the outputs go (outside the checkout: the scene alone is 400 MB)")
    parser.add_argument("--jobs", default="industrial,medical,satellite")
    parser.add_argument("--industrial", type=int, default=48)
    parser.add_argument("--medical", type=int, default=6)
    parser.add_argument("--scene", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from conditions import interleave, median_ratio, spread

    import logging

    import ray

    from segsuite.core.ray_cluster import LOCAL_CLUSTER_ENV, QUIET_ENV, quiet_driver

    for key, value in {**QUIET_ENV, **LOCAL_CLUSTER_ENV}.items():  # as `--engine ray` starts a local cluster
        os.environ.setdefault(key, value)
    work = args.workdir
    data = {
        "industrial": lambda: sorted(make_industrial(work / "industrial", args.industrial).glob("*.png")),
        "medical": lambda: sorted(make_medical(work / "medical", args.medical).glob("*.nii.gz")),
        "satellite": lambda: [make_scene(work / f"scene_{args.scene}.tif", args.scene)],
    }
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    inputs = {}
    for name in jobs:
        t0 = time.perf_counter()
        inputs[name] = data[name]()
        print(f"data {name}: {len(inputs[name])} input(s) ready in {time.perf_counter() - t0:.1f} s", flush=True)
    import torch

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads in the local engine), ray {ray.__version__}")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    quiet_driver(ray)
    print(f"local Ray cluster up in {time.perf_counter() - t0:.1f} s (not counted below)", flush=True)
    report = {}
    engines = {"local": EngineSettings(), "ray-1": EngineSettings(kind="ray", workers=1),
               "ray-2": EngineSettings(kind="ray", workers=2)}
    try:
        for name in jobs:
            records: dict[str, list[dict]] = {label: [] for label in engines}

            def run(label: str, name: str = name, records: dict = records) -> float:
                record = timed(name, inputs[name], work / "out" / name / label, engines[label])
                records[label].append(record)
                print(f"{name:10s} {label:6s} {json.dumps(record)}", flush=True)
                return record["seconds"]

            rounds = interleave({label: (lambda label=label: run(label)) for label in engines}, args.rounds, warmup=False)
            overhead = median_ratio(rounds["ray-1"], rounds["local"])
            speedup = median_ratio(rounds["ray-1"], rounds["ray-2"])
            equal = all(same_outputs(work / "out" / name / "local", work / "out" / name / k) for k in ("ray-1", "ray-2"))
            rss = {label: sorted({m for r in records[label] for m in r["worker_peak_rss_mb"]}) for label in ("ray-1", "ray-2")}
            report[name] = {"seconds": rounds, "ray1_over_local": round(overhead, 3),
                            "ray2_speedup_over_ray1": round(speedup, 3), "worker_peak_rss_mb": rss,
                            "outputs_equal_local": equal}
            print(f"{name:10s} {args.rounds} rounds, median (min-max): local {spread(rounds['local'])} s, "
                  f"ray-1 {spread(rounds['ray-1'])} s, ray-2 {spread(rounds['ray-2'])} s; "
                  f"ray-1/local {overhead:.3f} (target <= {TARGET_OVERHEAD}), "
                  f"ray-1/ray-2 {speedup:.3f} (target >= {TARGET_SPEEDUP}); worker peak RSS MB {rss}; "
                  f"outputs equal: {equal}", flush=True)
    finally:
        ray.shutdown()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
