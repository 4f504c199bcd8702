"""Industrial inspection throughput: end to end vs the bare model forward.

    .venv/bin/python benchmarks/bench_industrial.py [--n 8] [--size 1024]

End to end = what `segsuite run industrial` does: the job executor loads the model once, then
per part reads the PNG, infers at native resolution (sliding window over the model's 256x256
patch), finds defects, writes mask, heatmap, overlay and JSON; then the summary. Bare = the model's
forward passes over the same windows. Prints images per second for both, their ratio, and
where the rest of the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "sample_data" / "industrial" / "model.safetensors"))
    args = ap.parse_args()

    import torch

    from segsuite.core.data.images import write_image
    from segsuite.core.infer import Predictor, SlidingWindow
    from segsuite.core.jobs import Job, JobConsole, run_job
    from segsuite.core.pipeline import check_options
    from segsuite.plugins.industrial.pipeline import InspectionPipeline
    from segsuite.plugins.industrial.synthetic import render_part

    work = Path(tempfile.mkdtemp(prefix="segsuite-bench-ind-"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.n):
        img, _ = render_part(rng, (args.size, args.size), defective=bool(i % 2))
        paths.append(write_image(work / "in" / f"part_{i:02d}.png", img))

    pipeline = InspectionPipeline()
    options = check_options(pipeline.options, {})

    def inspect(inputs: list[Path], output: Path) -> None:
        job = Job(pipeline=pipeline, inputs=inputs, checkpoint=Path(args.model), output=output, options=options,
                  device="cpu", command="run industrial")
        result = run_job(job, console=JobConsole(quiet=True))
        if result.failed:
            raise SystemExit(f"{len(result.failed)} part(s) failed, first: {result.failed[0].error}")

    inspect(paths[:1], work / "warm")  # warm-up
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    inspect(paths, work / "out")
    prof.disable()
    e2e = time.perf_counter() - t0

    pred = Predictor.from_checkpoint(args.model, device="cpu")
    patch = tuple(pred.card.patch_size)
    window = SlidingWindow(patch, overlap=0.25)
    positions = window.positions((args.size, args.size))
    x = torch.randn(1, 1, args.size, args.size)
    batches = [torch.stack([x[0, :, y : y + patch[0], xx : xx + patch[1]] for y, xx in positions[i : i + 4]])
               for i in range(0, len(positions), 4)]
    t0 = time.perf_counter()
    for _ in range(args.n):
        for b in batches:
            pred.window_logits(b)
    bare = time.perf_counter() - t0
    print(f"{args.n} images {args.size}x{args.size} grey, CPU fp32, {len(positions)} windows of {patch[0]}x{patch[1]} each: "
          f"end to end {args.n / e2e:.2f} img/s, bare forward {args.n / bare:.2f} img/s, ratio {e2e / bare:.2f}")
    stats = pstats.Stats(prof)
    total = sum(v[3] for k, v in stats.stats.items() if k[0].endswith("jobs.py") and k[2] == "run_job")
    parts = {
        "read": ("images.py", "read_image"), "model (incl. blending)": ("infer.py", "logits"),
        "find defects": ("inspection.py", "find_defects"), "heatmap": ("inspection.py", "heatmap"),
        "overlay": ("inspection.py", "overlay_defects"), "write PNGs": ("images.py", "write_image"),
        "summary files": ("jobs.py", "_write_summary"),
    }
    for label, (file, func) in parts.items():
        t = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(file) and k[2] == func)
        print(f"  {label:<24} {t:6.2f} s  ({100 * t / total:4.1f} %)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import Conditions

    with Conditions():
        main()
