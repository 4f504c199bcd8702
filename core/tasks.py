"""The generic workflow steps behind ``segsuite train / evaluate / run`` on 2D paired data.

Each function is what the command of the same name does, callable from Python without a
subprocess. Domain plugins reuse them and add their own formats and outputs.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .classmap import ClassMap
from .errors import SegsuiteError
from .io import write_json


def _log_default(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def train(data: str | Path, classes: ClassMap, output: str | Path, config: Any, *, val: str | Path | None = None,
          resume: str | Path | None = None, log: Callable[[str], None] = _log_default, registry: Any = None,
          dataset_format: Callable[..., Any] | None = None) -> Any:
    """Train on paired folders or manifests (or a domain's ``dataset_format``); returns a :class:`FitResult`."""
    from .data.datasets import SegmentationDataset, channel_stats, scan_pairs
    from .data.transforms import Augment
    from .trainer import Trainer

    if dataset_format is not None:
        train_set = dataset_format(data, classes, train=True, patch_size=config.patch_size, augment=config.augment)
        norm = train_set.normalization
        val_set = dataset_format(val, classes, train=False, patch_size=config.patch_size, normalization=norm) if val else None
        n_train, n_val = len(train_set), len(val_set) if val_set is not None else 0
    else:
        pairs = scan_pairs(data)
        norm = channel_stats(pairs)
        augment = Augment(flip_axes=None, scale=(0.8, 1.25), crop=config.patch_size, brightness=0.1, contrast=0.1,
                          foreground_crop=config.foreground_crop, ignore_index=classes.ignore_index)
        if not config.augment:
            augment = Augment(crop=config.patch_size, ignore_index=classes.ignore_index) if config.patch_size else None
        train_set = SegmentationDataset(pairs, classes, norm, transform=augment)
        val_set = SegmentationDataset(scan_pairs(val), classes, norm) if val is not None else None
        if config.patch_size is None:
            from .data.images import read_image_array

            sizes = {read_image_array(p.mask).shape[:2] for p in pairs[:16]}  # masks only: no need to decode images
            if len(sizes) > 1 and config.batch_size > 1:
                raise SegsuiteError(f"{data}: images have different sizes {sorted(sizes)[:3]}; give a patch size to crop "
                                    "training samples (--patch-size H,W) or use --batch-size 1")
        n_train, n_val = len(pairs), len(val_set) if val_set is not None else 0
    norm_card = norm.to_dict()
    if dataset_format is None:
        from .data.images import read_image

        # recorded so that inference can bring e.g. 16-bit inputs to the range the model learned
        norm_card["dtype"] = str(read_image(pairs[0].image).array.dtype)
    first = train_set[0]
    trainer = Trainer(config, train_set, val_set, classes, output, normalization=norm_card,
                      in_channels=int(first["image"].shape[0]), spatial_dims=int(getattr(train_set, "spatial_dims", 2)), log=log, registry=registry)
    # said once the trainer has accepted the settings (a refused one is then the only line)
    log(f"training {config.model} on {n_train} samples ({n_val} for validation), "
        f"{classes.num_classes} classes, {int(first['image'].shape[0])} channel(s), device {trainer.device}")
    return trainer.fit(resume=resume)


def evaluate(checkpoint: str | Path, data: str | Path, output: str | Path | None = None, *, device: str = "auto",
             window: Any = None, registry: Any = None, boundary: bool = True,
             dataset_format: Callable[..., Any] | None = None) -> Any:
    """Metrics of a checkpoint on labelled pairs; writes metrics.json, per_image.csv and confusion.png."""
    from .data.datasets import Normalization, SegmentationDataset, scan_pairs
    from .infer import Predictor
    from .metrics import ConfusionMatrix

    predictor = Predictor.from_checkpoint(checkpoint, device=device, registry=registry, window=window)
    classes = predictor.class_map
    norm = Normalization.from_dict(predictor.normalization) if predictor.normalization.get("kind") == "zscore" else None
    if dataset_format is not None:
        patch = tuple(predictor.card.patch_size) if predictor.card.patch_size else None
        dataset = dataset_format(data, classes, train=False, patch_size=patch, normalization=norm)
    else:
        dataset = SegmentationDataset(scan_pairs(data), classes, normalization=norm)
    cm = ConfusionMatrix(classes.num_classes, classes.ignore_index, class_names=list(classes.names),
                         per_image=True, boundary=boundary, device=predictor.accumulate_on)
    sample_names = []
    for i in range(len(dataset)):
        sample = dataset[i]
        sample_names.append(_sample_name(sample["meta"]))
        pred = predictor.predict(sample["image"][None], normalized=True)
        cm.update(pred, sample["mask"][None].to(pred.device))
    metrics = cm.compute()
    for row, name in zip(metrics.per_image, sample_names):
        row["image"] = name
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        result = metrics.to_dict()
        result["checkpoint"] = str(checkpoint)
        result["data"] = str(data)
        write_json(out / "metrics.json", result)
        from .data.images import write_image
        from .visualize import confusion_chart

        write_image(out / "confusion.png", confusion_chart(metrics.confusion, list(classes.names)))
        _write_per_image(out / "per_image.csv", metrics.per_image)
    return metrics


def _sample_name(meta: dict[str, Any]) -> str:
    name = Path(meta["image"]).name
    return f"{name}@{meta['window'][0]},{meta['window'][1]}" if "window" in meta else name


def _write_per_image(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from .io import atomic_path

    if not rows:
        return
    keys = ["image"] + [k for k in rows[0] if k != "image"]
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()})


def predict_images(checkpoint: str | Path, inputs: Sequence[Path], output: str | Path, *, device: str = "auto",
                   reader: Callable[[Path], Any] | None = None, uncertainty: str | None = None) -> list[dict[str, Any]]:
    """Segment 2D images through the core's image pipeline and the job executor (quietly); return
    the records. Raises the first input's error when any input fails (this is an API call, not a batch
    command: ``segsuite run`` reports failures per input instead)."""
    from .image_pipeline import ImagePipeline
    from .jobs import Job, JobConsole, run_job
    from .pipeline import check_options

    pipeline = ImagePipeline(reader=reader)
    job = Job(pipeline=pipeline, inputs=[Path(p) for p in inputs], checkpoint=Path(checkpoint), output=Path(output),
              options=check_options(pipeline.options, {"uncertainty": uncertainty} if uncertainty else {}), device=device)
    result = run_job(job, console=JobConsole(quiet=True))
    if result.failed:
        raise SegsuiteError(result.failed[0].error or "prediction failed")
    return result.records


def pick_format(domain: Any, data: str | Path, name: str | None = None) -> Callable[..., Any] | None:
    """The domain's dataset format for ``data``: the one named, else the first whose ``detect`` accepts it."""
    if domain is None:
        if name is not None:
            raise SegsuiteError(f"--format {name!r} needs a domain (segsuite train DOMAIN --format ...)")
        return None
    formats = dict(domain.dataset_formats)
    if name is not None:
        if name not in formats:
            raise SegsuiteError(f"domain {domain.name!r} has no dataset format {name!r}; "
                                f"choose one of: {', '.join(formats) or 'none (paired image folders only)'}")
        return formats[name]
    for fmt in formats.values():
        if fmt.detect is not None and Path(data).exists() and fmt.detect(Path(data)):
            return fmt
    return None


def resolve_classes(spec: str | None, domain: Any = None) -> ClassMap:
    """``--classes``: comma-separated names, a class-map JSON file, or the domain's default."""
    if spec is None:
        if domain is None:
            raise SegsuiteError("--classes is required without a domain (e.g. --classes background,road,car)")
        return domain.class_map
    if spec.endswith(".json"):
        return ClassMap.from_json(spec)
    if domain is not None and spec in domain.class_maps:
        return domain.class_maps[spec]
    return ClassMap.from_names(spec)


def with_patch(config: Any, patch: str | None) -> Any:
    """``config`` with ``--patch-size`` (``"256,256"``, ``"256x256"`` or ``"96,96,96"``) applied;
    anything but 2 or 3 positive whole numbers is a one-line error."""
    if patch is None:
        return config
    from .trainer import check_patch_size

    parts = [v.strip() for v in patch.lower().replace("x", ",").split(",")]
    if not all(v.isdigit() for v in parts):
        raise SegsuiteError(f"--patch-size {patch!r}: give 2 (H,W) or 3 (D,H,W) whole numbers, e.g. 256,256")
    return replace(config, patch_size=check_patch_size(parts))
