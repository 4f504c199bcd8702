"""The trainer: one loop for every domain, CPU or GPU, single process or DDP.

What it does per epoch: train with mixed precision on GPU (bf16 where supported, else
fp16 with a gradient scaler), clip gradients, step a per-iteration LR schedule (poly or
cosine after a linear warm-up), validate with the device-side confusion matrix, write
``last`` and (on improvement of the monitored metric) ``best`` checkpoints plus the
training state needed by ``resume``, and log a CSV row (and TensorBoard scalars).

Reproducibility: the sample order of epoch ``e`` comes from a generator seeded with
``seed + e`` (the same permutation ``DistributedSampler`` would use), and resuming restores
the global RNG states, so an interrupted run continued with ``resume`` ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .aux_loss import supervised_loss
from .checkpoint import ModelCard, load_checkpoint, load_training_state, save_checkpoint, save_training_state
from .classmap import ClassMap
from .errors import SegsuiteError
from .metrics import ConfusionMatrix, SegmentationMetrics


@dataclass(frozen=True)
class TrainConfig:
    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    freeze_encoder_epochs: int = 0
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    warmup_epochs: float = 0.0
    loss: str = "dicece"
    loss_options: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    foreground_crop: float = 0.0
    class_weights: Literal["none", "inverse", "median"] = "none"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = False
    grad_clip: float | None = 1.0
    # seconds of training between two writes of the resume point (last checkpoint + training state);
    # 0 writes it after every epoch. The final epoch always writes it, "best" is written on every
    # improvement; see Trainer.fit.
    save_every: float = 60.0
    monitor: str = "mean_iou"
    early_stopping: int | None = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    val_every: int = 1
    tensorboard: bool = True
    domain: str | None = None
    patch_size: tuple[int, ...] | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SegsuiteError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        if isinstance(data.get("patch_size"), list):
            data["patch_size"] = tuple(data["patch_size"])
        return check_config(cls(**data))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        import yaml

        from .errors import InputFileError

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputFileError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise InputFileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputFileError(f"{path}: the config must be a mapping of settings")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(data, str(path))


_CHOICES = {"optimizer": ("adamw", "sgd"), "schedule": ("poly", "cosine", "constant"),
            "class_weights": ("none", "inverse", "median"), "amp": ("auto", "bf16", "fp16", "off")}
# setting -> (type, smallest value, whether the smallest value itself is refused); None is "not set"
_BOUNDS: dict[str, tuple[type, float, bool]] = {
    "epochs": (int, 1, False), "batch_size": (int, 1, False), "lr": (float, 0, True), "weight_decay": (float, 0, False),
    "warmup_epochs": (float, 0, False), "foreground_crop": (float, 0, False), "freeze_encoder_epochs": (int, 0, False),
    "grad_clip": (float, 0, True), "early_stopping": (int, 1, False), "seed": (int, 0, False), "workers": (int, 0, False),
    "val_every": (int, 1, False), "save_every": (float, 0, False),
}


def check_config(cfg: TrainConfig, *, allow_frozen: bool = False) -> TrainConfig:
    """``cfg`` if every value is usable, else a one-line :class:`SegsuiteError` naming the setting.

    Called on the command line's values (and a ``--config`` file's) before any data is read or
    any folder is made; without it ``--epochs 0`` "succeeds" without writing a checkpoint and
    ``--lr -1`` fails deep inside the optimiser. Numbers written as text in YAML (``1e-3`` is a
    string to YAML 1.1) are converted. ``allow_frozen`` lets ``lr`` be 0 (a run that changes no
    weight: a baseline from Python, never what a command line means).
    """
    from .devices import parse_device

    changes: dict[str, Any] = {}
    for name, (kind, low, strict) in _BOUNDS.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        number = _number(value, kind)
        if number is None:
            raise SegsuiteError(f"{flag} {value!r}: must be {'a whole number' if kind is int else 'a number'}")
        if name == "lr" and allow_frozen:
            strict = False
        if (number <= low) if strict else (number < low):
            shown = f"{value:g}" if isinstance(value, float) else value  # --lr -1, not -1.0
            raise SegsuiteError(f"{flag} {shown}: must be {'greater than' if strict else 'at least'} {low:g}")
        if number != value or type(number) is not type(value):
            changes[name] = number
    if cfg.foreground_crop is not None and float(cfg.foreground_crop) > 1:
        raise SegsuiteError(f"--foreground-crop {cfg.foreground_crop}: must be a share between 0 and 1")
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise SegsuiteError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")
    if cfg.patch_size is not None:
        changes["patch_size"] = check_patch_size(cfg.patch_size)
    changes["device"] = parse_device(cfg.device)
    return replace(cfg, **changes)


def check_patch_size(size: Any) -> tuple[int, ...]:
    """A training crop ``(H, W)`` or ``(D, H, W)`` of positive whole numbers, or a one-line error."""
    text = ",".join(map(str, size)) if isinstance(size, (list, tuple)) else str(size)
    values = tuple(_number(v, int) for v in size) if isinstance(size, (list, tuple)) else (None,)
    if not 2 <= len(values) <= 3 or any(v is None for v in values):
        raise SegsuiteError(f"--patch-size {text}: give 2 (H,W) or 3 (D,H,W) whole numbers, e.g. 256,256")
    if min(values) < 1:
        raise SegsuiteError(f"--patch-size {text}: every side must be at least 1 pixel")
    return values


def _number(value: Any, kind: type) -> int | float | None:
    """``value`` as a finite int/float, or None when it is not one (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if kind is int:
        if isinstance(value, str):
            return int(value) if value.strip().lstrip("+-").isdigit() else None
        return int(number) if number == int(number) else None
    return number


def _check_patch_against(model: nn.Module, patch: Sequence[int], name: str) -> None:
    """A crop smaller than one cell of the deepest feature map is refused in one line; with
    instance normalisation (which needs more than one value per channel) the deepest map must
    keep at least 2 cells per side."""
    stride = int(getattr(model, "stride", 1))
    instance_norm = any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in model.modules())
    smallest = stride * (2 if instance_norm else 1)
    if min(patch) < smallest:
        raise SegsuiteError(f"--patch-size {','.join(map(str, patch))}: {name} downsamples by {stride}; "
                            f"give at least {smallest} pixels per side")


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``--device`` string (checked by :func:`~segsuite.core.devices.parse_device`);
    a GPU that is not there is a one-line error, not torch's traceback."""
    from .devices import parse_device

    name = parse_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SegsuiteError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SegsuiteError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                            f"numbered from 0; use --device cuda:0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SegsuiteError(f"--device {name}: Apple's MPS backend is not available here; use --device cpu")
    return dev


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or setting == "off":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    t = min(max(t, 0.0), 1.0)
    if schedule == "poly":
        return (1 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def clip_gradients(parameters: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale gradients so that their global L2 norm is at most ``max_norm``; returns the norm.

    The same arithmetic as :func:`torch.nn.utils.clip_grad_norm_` (coefficient
    ``max_norm / (norm + 1e-6)`` clamped to 1), with one saving: on the CPU, where reading the
    norm costs no device synchronisation, the scaling pass over every gradient is skipped when
    the coefficient is 1 (most steps of a healthy run), which multiplying by 1 would not change.
    On a GPU the scaling always runs, so no step waits for the device.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in torch._foreach_norm(grads)]))
    coef = max_norm / (total + 1e-6)
    if grads[0].device.type == "cpu" and bool(coef >= 1.0):
        return total
    torch._foreach_mul_(grads, torch.clamp(coef, max=1.0))
    return total


class EpochSampler(torch.utils.data.Sampler[int]):
    """Shuffled indices for one epoch, identical to DistributedSampler's for the same seed+epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.epoch = 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        idx += idx[: self.per_rank * self.world - len(idx)]  # pad so every rank has the same count
        return iter(idx[self.rank :: self.world])

    def __len__(self) -> int:
        return self.per_rank


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    shapes = {tuple(b["mask"].shape) for b in batch}
    if len(shapes) > 1:
        raise SegsuiteError(
            f"samples in a batch have different sizes {sorted(shapes)[:3]}; set a patch size (crop) or use --batch-size 1"
        )
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "mask": torch.stack([b["mask"] for b in batch]),
        "meta": [b["meta"] for b in batch],
    }


@dataclass
class FitResult:
    best_checkpoint: Path | None
    last_checkpoint: Path
    best_value: float
    monitor: str
    epochs_run: int
    history: list[dict[str, Any]]
    final_metrics: dict[str, Any] | None



def _training_forward(model: nn.Module, x: torch.Tensor, batch: int) -> Any:
    """``model(x)`` in training mode, with batch norm's refusal of a one-value batch (batch 1 and a
    1x1 feature map: a small patch at the bottleneck, or a global-pooling branch as DDRNet's) as a
    one-line error that says what to change."""
    try:
        return model(x)
    except ValueError as exc:
        if "Expected more than 1 value per channel when training" not in str(exc):
            raise
        raise SegsuiteError(f"batch norm cannot train on a batch of {batch} whose feature map shrinks to one value per "
                            f"channel (patch {tuple(x.shape[2:])}): use --batch-size 2 or more per process, or a larger "
                            "patch") from None


class Trainer:
    """Train ``model`` on ``train_set``; validate on ``val_set``; write checkpoints under ``output``."""

    def __init__(self, config: TrainConfig, train_set: Any, val_set: Any | None, class_map: ClassMap, output: str | Path,
                 *, model: nn.Module | None = None, normalization: dict[str, Any] | None = None,
                 in_channels: int | None = None, spatial_dims: int = 2, log: Callable[[str], None] | None = None,
                 registry: Any = None) -> None:
        self.cfg = config = check_config(config, allow_frozen=True)
        self.train_set, self.val_set = train_set, val_set
        self.class_map = class_map
        self.output = Path(output)
        self.normalization = normalization or {}
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(config.device)
        if self.world > 1:
            self._init_distributed()
        _seed_everything(config.seed)  # before the model is built: initial weights depend on it
        if model is None:
            from .models import build_model

            if in_channels is None:
                in_channels = int(train_set[0]["image"].shape[0])
            model = build_model(config.model, in_channels, class_map.num_classes, spatial_dims,
                                pretrained=config.pretrained, registry=registry, **config.model_options)
            if config.pretrained and self.rank == 0:
                self.log(f"pretrained: {model.pretrained_report.summary()}")
        if config.patch_size is not None:
            _check_patch_against(model, config.patch_size, config.model)
        self.model = model.to(self.device)
        if config.channels_last and spatial_dims == 2:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.spatial_dims = spatial_dims
        self.amp = amp_dtype(config.amp, self.device)
        self.input_stats: dict[str, Any] | None = None  # raw-input percentiles for the card, see fit

    # -- set-up ---------------------------------------------------------------------
    def _init_distributed(self) -> None:
        import torch.distributed as dist

        self._owns_process_group = not dist.is_initialized()
        if self._owns_process_group:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)

    def _loss(self) -> nn.Module:
        from .losses import build_loss

        weights = None
        if self.cfg.class_weights != "none":
            from .data.stats import count_dataset

            counts = count_dataset(self.train_set, self.class_map)
            weights = counts.weights(self.cfg.class_weights).tolist()
            if self.rank == 0:
                self.log("class weights: " + ", ".join(f"{n}={w:.3g}" for n, w in zip(self.class_map.names, weights)))
        return build_loss(self.cfg.loss, ignore_index=self.class_map.ignore_index, class_weights=weights,
                          **self.cfg.loss_options).to(self.device)

    def _optimizer(self, params) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.cfg.lr, momentum=0.9, weight_decay=self.cfg.weight_decay)
        if self.cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        raise SegsuiteError(f"unknown optimizer {self.cfg.optimizer!r}; use adamw or sgd")

    def card(self, metrics: dict[str, Any] | None = None) -> ModelCard:
        from . import __version__

        model = self.model.module if hasattr(self.model, "module") else self.model
        return ModelCard(model=model.card(), class_map=self.class_map.to_dict(), normalization=self.normalization,
                         patch_size=list(self.cfg.patch_size) if self.cfg.patch_size else None, domain=self.cfg.domain,
                         segsuite_version=__version__, training=asdict(self.cfg), metrics=metrics or {},
                         input_stats=self.input_stats or {})

    # -- the loop -------------------------------------------------------------------
    def fit(self, resume: str | Path | None = None) -> FitResult:
        cfg = self.cfg
        if self.input_stats is None and self.rank == 0:  # for the drift check at run time (segsuite.core.drift)
            from .drift import training_input_stats

            stats = training_input_stats(self.train_set, self.normalization, self.class_map.ignore_index, seed=cfg.seed)
            self.input_stats = stats.to_dict() if stats is not None else {}
        _seed_everything(cfg.seed)
        self.output.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        raw_model = model.module if hasattr(model, "module") else model
        per_rank_batch = cfg.batch_size // self.world
        if per_rank_batch < 1 or cfg.batch_size % self.world:
            raise SegsuiteError(f"batch size {cfg.batch_size} must be a multiple of the {self.world} processes")
        sampler = EpochSampler(len(self.train_set), cfg.seed, True, self.rank, self.world)
        loader = torch.utils.data.DataLoader(self.train_set, batch_size=per_rank_batch, sampler=sampler,
                                             num_workers=cfg.workers, collate_fn=collate, drop_last=True,
                                             pin_memory=self.device.type == "cuda", persistent_workers=cfg.workers > 0)
        if len(loader) == 0:
            raise SegsuiteError(f"{len(self.train_set)} training samples cannot fill one batch of {cfg.batch_size}")
        loss_fn = self._loss()
        params = list(model.parameters())
        optimizer = self._optimizer(params)
        steps_per_epoch = len(loader)
        total = cfg.epochs * steps_per_epoch
        warmup = int(cfg.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg.schedule))
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        mode_min = cfg.monitor in ("val_loss", "loss")
        best = math.inf if mode_min else -math.inf
        stale, start_epoch = 0, 0
        history: list[dict[str, Any]] = []
        if resume is not None:
            start_epoch, best, stale, history = self._resume(resume, raw_model, optimizer, scheduler, scaler)
            self.log(f"resumed from {resume} at epoch {start_epoch}")
        writer = self._tensorboard()
        last_path = self.output / "last.safetensors"
        best_path = self.output / "best.safetensors"
        final_metrics = None
        epoch = start_epoch
        last_saved = time.monotonic()
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            if cfg.freeze_encoder_epochs and hasattr(raw_model, "freeze_encoder") and raw_model.encoder_prefix:
                raw_model.freeze_encoder(epoch < cfg.freeze_encoder_epochs)
            model.train()
            sampler.set_epoch(epoch)
            loss_sum = torch.zeros((), device=self.device)
            for batch in self._progress(loader, f"epoch {epoch + 1}/{cfg.epochs}"):
                x = batch["image"].to(self.device, non_blocking=True)
                y = batch["mask"].to(self.device, non_blocking=True)
                if cfg.channels_last and self.spatial_dims == 2:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    logits = _training_forward(model, x, per_rank_batch)
                loss = supervised_loss(loss_fn, logits, y)  # main logits + weighted auxiliary heads, if any
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    clip_gradients(params, cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach()
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(loss_sum) / steps_per_epoch,
                                   "lr": optimizer.param_groups[0]["lr"]}
            if not math.isfinite(row["train_loss"]) and self.rank == 0:
                # checked once per epoch (one sync), not per step
                self.log("warning: the training loss is not finite (all pixels ignored, or diverging); "
                         "check the masks and class map, or lower --lr")
            improved = False
            if self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                metrics, val_loss = self.validate(raw_model, loss_fn)
                final_metrics = metrics.to_dict()
                row.update({"val_loss": val_loss, "mean_iou": metrics.mean_iou, "global_accuracy": metrics.global_accuracy,
                            "mean_accuracy": metrics.mean_accuracy, "mean_dice": metrics.mean_dice})
                value = self._monitor_value(metrics, val_loss)
                if math.isfinite(value) and (value < best if mode_min else value > best):
                    best, stale, improved = value, 0, True
                else:
                    stale += 1
            row["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            stopping = bool(cfg.early_stopping and stale >= cfg.early_stopping)
            if self.rank == 0:
                metrics_for_card = {k: v for k, v in row.items() if k != "lr"}
                # The resume point (weights + optimiser state, ~3x the model's size) is written at most
                # every `save_every` seconds and always at the end: on small data an epoch takes seconds
                # and writing it every epoch cost ~10 % of the training time (benchmarks/bench_core.py).
                if epoch + 1 == cfg.epochs or stopping or time.monotonic() - last_saved >= cfg.save_every:
                    save_checkpoint(last_path, raw_model, self.card(metrics_for_card))
                    save_training_state(self.output / "last.state.pt", self._state(epoch + 1, optimizer, scheduler, scaler, best, stale, history))
                    last_saved = time.monotonic()
                if improved:  # without validation there is no "best"
                    save_checkpoint(best_path, raw_model, self.card({**metrics_for_card, "monitor": cfg.monitor, "best": best}))
                self._log_row(row, writer)
                self.log(self._describe(row, improved))
            if stopping:
                self.log(f"early stopping: {cfg.monitor} has not improved for {stale} validation(s)")
                epoch += 1
                break
        else:
            epoch = cfg.epochs
        if writer is not None:
            writer.close()
        if self.rank == 0 and final_metrics is not None:
            from .io import write_json

            write_json(self.output / "metrics.json", final_metrics)
        best_ckpt = best_path if self.val_set is not None and best_path.exists() else last_path
        self._finish_distributed()
        return FitResult(best_ckpt, last_path, best, cfg.monitor, epoch, history, final_metrics)

    def _finish_distributed(self) -> None:
        """Leave the process group cleanly when this trainer made it: gloo's threads still running at
        interpreter exit abort the process ("terminate called without an active exception")."""
        if self.world > 1 and getattr(self, "_owns_process_group", False):
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()  # every rank has finished writing before any leaves
                dist.destroy_process_group()

    def _monitor_value(self, metrics: SegmentationMetrics, val_loss: float) -> float:
        name = self.cfg.monitor
        if name in ("val_loss", "loss"):
            return val_loss
        if "/" in name:  # per-class metric, e.g. "iou/car"
            metric, cls = name.split("/", 1)
            arr = getattr(metrics, metric, None)
            if arr is None or not isinstance(arr, np.ndarray):
                raise SegsuiteError(f"cannot monitor {name!r}: per-class metrics are iou, dice, accuracy, precision, recall")
            return float(arr[self.class_map.index(cls)])
        value = getattr(metrics, name, None)
        if not isinstance(value, float):
            raise SegsuiteError(f"cannot monitor {name!r}; use val_loss, mean_iou, mean_dice, global_accuracy, "
                                "mean_accuracy, weighted_iou or a per-class metric such as iou/<class>")
        return value

    @torch.no_grad()
    def validate(self, model: nn.Module, loss_fn: nn.Module | None = None) -> tuple[SegmentationMetrics, float]:
        model.eval()
        cm = ConfusionMatrix(self.class_map.num_classes, self.class_map.ignore_index,
                             class_names=list(self.class_map.names), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        n = 0
        loader = torch.utils.data.DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=self.cfg.workers,
                                             collate_fn=collate)
        for batch in loader:
            x = batch["image"].to(self.device, non_blocking=True)
            y = batch["mask"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                logits = model(x)
            if loss_fn is not None:
                loss_sum += loss_fn(logits.float(), y)
            cm.update(logits.argmax(1), y)
            n += 1
        return cm.compute(), float(loss_sum) / max(n, 1)

    # -- state ----------------------------------------------------------------------
    def _state(self, epoch: int, optimizer, scheduler, scaler, best: float, stale: int, history: list) -> dict[str, Any]:
        return {
            "epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "best": best, "stale": stale,
            "history": json.dumps(history), "config": json.dumps(asdict(self.cfg)),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(_numpy_state()),
            "python_rng": json.dumps(random.getstate()[1]),
        }

    def _resume(self, path: str | Path, model: nn.Module, optimizer, scheduler, scaler) -> tuple[int, float, int, list]:
        path = Path(path)
        run = path if path.is_dir() else path.parent
        ckpt = load_checkpoint(run / "last.safetensors")
        model.load_state_dict(ckpt.state_dict)
        state = load_training_state(run / "last.state.pt")
        saved_cfg = json.loads(state["config"])
        for key in ("model", "batch_size", "loss", "seed"):
            if saved_cfg.get(key) != getattr(self.cfg, key):
                raise SegsuiteError(f"{run}: cannot resume; {key} was {saved_cfg.get(key)!r}, now {getattr(self.cfg, key)!r}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        kind, keys, pos, has_gauss, gauss = json.loads(state["numpy_rng"])
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
        py = random.getstate()
        random.setstate((py[0], tuple(json.loads(state["python_rng"])), py[2]))
        history = json.loads(state["history"])
        if self.rank == 0:  # log.csv may hold epochs run after this resume point: they are run again
            (self.output / "log.csv").unlink(missing_ok=True)
            for row in history:
                self._log_row(row, None)
        return int(state["epoch"]), float(state["best"]), int(state["stale"]), history

    # -- logging --------------------------------------------------------------------
    def _tensorboard(self):
        if not self.cfg.tensorboard or self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("tensorboard is not installed; writing the CSV log only")
            return None
        return SummaryWriter(str(self.output / "tensorboard"))

    def _log_row(self, row: dict[str, Any], writer) -> None:
        path = self.output / "log.csv"
        keys = ["epoch", "train_loss", "val_loss", "mean_iou", "mean_dice", "global_accuracy", "mean_accuracy", "lr", "time_s"]
        new = not path.exists() or row["epoch"] == 1
        with path.open("w" if new else "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(k, v, row["epoch"])

    def _describe(self, row: dict[str, Any], improved: bool) -> str:
        parts = [f"epoch {row['epoch']}/{self.cfg.epochs}", f"loss {row['train_loss']:.4f}"]
        if "val_loss" in row:
            parts += [f"val_loss {row['val_loss']:.4f}", f"mIoU {row['mean_iou']:.4f}", f"acc {row['global_accuracy']:.4f}"]
        parts.append(f"{row['time_s']:.1f}s")
        return "  ".join(parts) + ("  *best*" if improved and "val_loss" in row else "")

    def _progress(self, loader, label: str):
        if not sys.stderr.isatty() or self.rank != 0:
            return loader
        from rich.progress import Progress

        def gen():
            with Progress(transient=True) as progress:
                task = progress.add_task(label, total=len(loader))
                for batch in loader:
                    yield batch
                    progress.advance(task)

        return gen()


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _numpy_state() -> list[Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def with_overrides(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
