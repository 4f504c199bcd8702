"""Core benchmarks: trainer overhead and 3D sliding-window inference against MONAI.

    .venv/bin/python benchmarks/bench_core.py [--device cpu|cuda] [--quick]

Prints the machine and its load (``conditions.py``) and two ratios, each the median of
interleaved rounds (numbers quoted in the README):

1. training throughput of ``segsuite.core.Trainer`` with its default settings vs a minimal
   hand-written PyTorch loop (same model, batch, data, loss, optimiser). The trainer also
   clips gradients, steps its LR schedule, sums the loss on the device and writes the last
   checkpoint and resume state (at the end here: they are written at most every 60 s);
2. 3D sliding-window inference time of ``segsuite.core.Predictor`` vs the bare forward passes
   over the same windows (cut out beforehand, the network as built, 4 at a time on torch's
   default threads) and vs ``monai.inferers.sliding_window_inference`` (same network, ROI,
   overlap, Gaussian blending, window batch), with the largest difference between the outputs;
   once with a one-layer network (the engine's own work shows) and once with the shipped
   medical model. Also the *engine forward*: the same windows through
   ``Predictor.map_batches`` (its memory layout and CPU streams) without cutting or blending,
   so that segsuite/engine forward is the engine's own overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from conditions import Conditions, interleave, median_ratio, spread

SHIPPED_MEDICAL = Path(__file__).resolve().parents[1] / "sample_data" / "medical" / "model.safetensors"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class InMemory(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n, size, size), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "mask": self.y[i], "meta": {}}


def bench_training(device: torch.device, quick: bool) -> tuple[list[float], list[float]]:
    from segsuite.core import ClassMap, TrainConfig, Trainer, build_model
    from segsuite.core.losses import DiceCELoss
    from segsuite.core.trainer import collate

    n, size, batch, epochs = (32, 96, 8, 2) if quick else (64, 128, 8, 3)
    data = InMemory(n, size, 3)
    classes = ClassMap(("a", "b", "c"))

    def hand_loop() -> float:
        torch.manual_seed(0)
        model = build_model("unet", 3, 3, encoder="resnet18").to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        loss_fn = DiceCELoss()
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, collate_fn=collate, drop_last=True)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(epochs):
            for b in loader:
                x, y = b["image"].to(device), b["mask"].to(device)
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        _sync(device)
        return epochs * (n // batch) * batch / (time.perf_counter() - t0)

    def trainer() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(model="unet", model_options={"encoder": "resnet18"}, epochs=epochs, batch_size=batch,
                              lr=1e-3, device=str(device), tensorboard=False, loss="dicece")
            t = Trainer(cfg, data, None, classes, tmp, in_channels=3, log=lambda m: None)
            _sync(device)
            t0 = time.perf_counter()
            t.fit()
            _sync(device)
            return epochs * (n // batch) * batch / (time.perf_counter() - t0)

    rounds = interleave({"hand": hand_loop, "trainer": trainer}, 3 if quick else 5)
    return rounds["hand"], rounds["trainer"]


def bench_sliding_window(device: torch.device, quick: bool, model_kind: str) -> dict[str, list[float] | float]:
    """Bare forward passes over the windows (already cut out), segsuite's Predictor and MONAI's
    sliding_window_inference on one volume, interleaved; also the largest output difference."""
    from monai.inferers import sliding_window_inference

    from segsuite.core import Predictor, SlidingWindow

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        if model_kind == "one-layer":
            # one 3x3x3 convolution: the network costs little, so the engine's own work shows
            from segsuite.core.models.base import SegmentationModel

            return SegmentationModel(torch.nn.Conv3d(1, 4, 3, padding=1), arch="conv", in_channels=1, num_classes=4,
                                     spatial_dims=3, stride=1, encoder_prefix=None)
        from segsuite.core.checkpoint import load_checkpoint

        return load_checkpoint(SHIPPED_MEDICAL).build_model()

    # the bare loop and MONAI get the network as built; the Predictor its own copy, which it
    # may put in another memory layout (see segsuite.core.infer)
    model = build().to(device).eval()
    shape = (1, 1, 96, 96, 64) if quick else (1, 1, 160, 160, 96)
    roi = (48, 48, 32) if quick else (96, 96, 64)
    x = torch.randn(*shape, device=device)
    window = SlidingWindow(roi, overlap=0.5, batch_size=4)
    predictor = Predictor(build(), device=str(device), amp="off", window=window)
    cut = [x[0][(slice(None), *(slice(s, s + p) for s, p in zip(st, roi)))] for st in window.positions(shape[2:])]
    batches = [torch.stack(cut[i : i + 4]) for i in range(0, len(cut), 4)]
    per = predictor.stream_batch(4)
    engine_batches = [torch.stack(cut[i : i + per]) for i in range(0, len(cut), per)]

    def timed(fn):
        def run() -> float:
            _sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            _sync(device)
            return time.perf_counter() - t0
        return run

    def bare() -> None:
        for b in batches:
            model(b)

    def engine() -> None:
        for _ in predictor.map_batches((None, b) for b in engine_batches):
            pass

    def monai() -> torch.Tensor:
        return sliding_window_inference(x, roi, 4, model, overlap=0.5, mode="gaussian")

    def ours() -> torch.Tensor:
        return predictor.logits(x, normalized=True)

    with torch.no_grad():
        diff = float((ours() - monai()).abs().max())
    rounds = interleave({"bare": timed(bare), "engine": timed(engine), "segsuite": timed(ours), "monai": timed(monai)},
                        3 if quick else 5)
    return {**rounds, "diff": diff, "windows": len(cut), "streams": predictor.stream_count(),
            "layout": str(predictor.memory_format or "contiguous")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    with Conditions():
        hand, ours = bench_training(device, args.quick)
        print(f"training  U-Net/ResNet-18, 128x128, batch 8, fp32, {len(hand)} interleaved rounds: hand-written loop "
              f"{spread(hand)} img/s, Trainer {spread(ours)} img/s, Trainer/hand {median_ratio(ours, hand):.3f}")
        for kind in ("one-layer", "shipped medical model"):
            r = bench_sliding_window(device, args.quick, kind)
            print(f"3D sliding window, {kind}, volume {'96x96x64' if args.quick else '160x160x96'}, ROI {'48x48x32' if args.quick else '96x96x64'}, overlap 0.5, gaussian, 4 windows per "
                  f"batch, {r['windows']} windows: bare forward {spread(r['bare'])} s, engine forward ({r['layout']}, "
                  f"{r['streams']} streams) {spread(r['engine'])} s, segsuite {spread(r['segsuite'])} s, "
                  f"MONAI {spread(r['monai'])} s; segsuite/bare {median_ratio(r['segsuite'], r['bare']):.3f}, "
                  f"segsuite/MONAI {median_ratio(r['segsuite'], r['monai']):.3f}, "
                  f"segsuite/engine forward {median_ratio(r['segsuite'], r['engine']):.3f}, max |diff| {r['diff']:.1e}")

if __name__ == "__main__":
    main()
