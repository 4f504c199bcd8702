"""Core benchmarks: trainer overhead and 3D sliding-window inference against MONAI.

    .venv/bin/python benchmarks/bench_core.py [--device cpu|cuda] [--quick]

Prints the machine and its load (``conditions.py``) and two ratios, each the median of
interleaved rounds (numbers quoted in the README):

1. training throughput of ``segsuite.core.Trainer`` with its default settings vs a minimal
   hand-written PyTorch loop (same model, batch, data, loss, optimiser). The trainer also
   clips gradients, steps its LR schedule, sums the loss on the device and writes the last
   checkpoint and resume state (at the end here: they are written at most every 60 s);
2. 3D sliding-window inference time of ``segsuite.core.Predictor`` vs
   ``monai.inferers.sliding_window_inference`` (same network, ROI, overlap, Gaussian
   blending, window batch), with the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from conditions import Conditions, interleave, median_ratio, spread


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


def bench_sliding_window(device: torch.device, quick: bool) -> tuple[float, float, float]:
    from monai.inferers import sliding_window_inference

    from segsuite.core import Predictor, SlidingWindow, build_model

    torch.manual_seed(0)
    model = build_model("unet3d", 1, 4, spatial_dims=3).to(device).eval()
    shape = (1, 1, 96, 96, 64) if quick else (1, 1, 128, 128, 96)
    roi = (48, 48, 48) if quick else (64, 64, 64)
    x = torch.randn(*shape, device=device)
    predictor = Predictor(model, device=str(device), amp="off", window=SlidingWindow(roi, overlap=0.5, batch_size=4))

    def ours() -> torch.Tensor:
        return predictor.logits(x, normalized=True)

    def monai() -> torch.Tensor:
        with torch.no_grad():
            return sliding_window_inference(x, roi, 4, model, overlap=0.5, mode="gaussian")

    diff = float((ours() - monai()).abs().max())  # also the warm-up
    t_ours, t_monai = [], []
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        ours()
        _sync(device)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        monai()
        _sync(device)
        t_monai.append(time.perf_counter() - t0)
    return statistics.median(t_ours), statistics.median(t_monai), diff


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
        t_ours, t_monai, diff = bench_sliding_window(device, args.quick)
        print(f"3D sliding window  MONAI UNet, ROI 64^3, overlap 0.5, gaussian, sw_batch 4: segsuite {t_ours:.3f} s, "
              f"MONAI {t_monai:.3f} s, time ratio {t_ours / t_monai:.3f}, max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
