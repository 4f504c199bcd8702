"""Start-up costs: how long a command takes before it does any work.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 5]

Each measurement is a fresh Python process (what a user pays per command), run in interleaved
rounds with the median reported:

1. ``segsuite run DOMAIN --help`` for every built-in domain, and ``python -c pass`` as the
   floor (the interpreter alone);
2. loading each shipped checkpoint and building its network (``load_checkpoint(...).build_model()``),
   with the heavy libraries the process ended up importing (MONAI loads all of its sub-packages
   on ``import monai``: ~2.6 s on a quiet 2-core machine, so only architectures that need it
   should pull it in).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("driving", "industrial", "medical", "satellite")
HEAVY = ("monai", "segmentation_models_pytorch", "timm", "torchvision", "rasterio", "onnxruntime", "nibabel")

LOAD = r'''
import json, sys, time
t0 = time.perf_counter()
from segsuite.core.checkpoint import load_checkpoint
model = load_checkpoint(sys.argv[1]).build_model()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "arch": model.arch,
                  "imported": [m for m in sys.argv[2].split(",") if m in sys.modules]}))
'''


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    from conditions import interleave, spread

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    segsuite = str(Path(sys.executable).with_name("segsuite"))
    commands = {"python -c pass": [sys.executable, "-c", "pass"]}
    commands.update({f"segsuite run {d} --help": [segsuite, "run", d, "--help"] for d in DOMAINS})
    rounds = interleave({name: (lambda c=cmd: timed(c)) for name, cmd in commands.items()}, args.rounds)
    print(f"process start to exit, {args.rounds} interleaved rounds, median (min-max):")
    for name, values in rounds.items():
        print(f"  {name:<32} {spread(values)} s")

    loads: dict[str, list[float]] = {}
    info: dict[str, dict] = {}

    def load(domain: str) -> float:
        path = ROOT / "sample_data" / domain / "model.safetensors"
        out = subprocess.run([sys.executable, "-c", LOAD, str(path), ",".join(HEAVY)], check=True, capture_output=True,
                             text=True)
        record = json.loads(out.stdout.strip().splitlines()[-1])
        info[domain] = record
        return record["seconds"]

    shipped = [d for d in DOMAINS if (ROOT / "sample_data" / d / "model.safetensors").exists()]
    loads = interleave({d: (lambda d=d: load(d)) for d in shipped}, args.rounds)
    print("loading a shipped checkpoint and building its network (imports included), median (min-max):")
    for domain, values in loads.items():
        imported = ", ".join(info[domain]["imported"]) or "none of " + "/".join(HEAVY)
        print(f"  {domain:<11} {info[domain]['arch']:<9} {spread(values)} s; heavy imports: {imported}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import Conditions

    with Conditions():
        main()
