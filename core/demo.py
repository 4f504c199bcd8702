"""``segsuite demo``: every installed domain on its shipped sample, plus a short training run, in one HTML report.

One generic procedure for every domain that declares a :class:`~segsuite.core.domain.Sample`:
its sample inputs (in ``sample_data/<domain>/``) go through the domain's pipeline with the
shipped default model and the job executor, exactly as ``segsuite run DOMAIN`` runs them;
the pipeline's ``report_section`` describes the records, and when the pipeline
:class:`~segsuite.core.pipeline.Evaluates`, the shipped model is scored on the sample labels
and the evaluation is added to the section. A domain whose sample or model is not shipped
is listed as skipped, with the reason, and the others go on. The training section runs the generic 2D workflow (generate labelled
shapes, split, train a U-Net, evaluate, segment), the one part of segsuite the shipped
models do not show. Everything lands in one folder with ``index.html`` and ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NotImplementedYet, SegsuiteError
from .report import ReportSection, Table, write_report


class SampleMissing(SegsuiteError):
    """A domain's shipped sample data or default model is not in this checkout."""


def sample_root(domain: Any) -> Path:
    """The folder of a domain's shipped sample: its ``Sample.root``, else ``sample_data/<domain>/``."""
    from .sample_data import sample_data_dir

    return Path(domain.sample.root) if domain.sample.root is not None else sample_data_dir() / domain.name


def sample_inputs(domain: Any, pipeline: Any) -> list[Path]:
    """The files of a domain's :class:`Sample` inputs, or :class:`SampleMissing` naming the first absent one."""
    from .jobs import expand_inputs

    root = sample_root(domain)
    suffixes = pipeline.suffixes or tuple(domain.readers) or None
    found: list[Path] = []
    for spec in domain.sample.inputs:
        path = root / spec
        if not any(ch in spec for ch in "*?[") and not path.exists():
            raise SampleMissing(f"no shipped sample {path}")
        try:
            found += expand_inputs(str(path), suffixes)
        except SegsuiteError as exc:
            raise SampleMissing(f"no shipped sample: {exc}") from None
    return found


def domain_section(domain: Any, output: Path, device: str) -> ReportSection:
    """One domain's demo section: its sample through its pipeline (the code of ``segsuite run``), then its evaluation."""
    from .checkpoint import read_card
    from .image_pipeline import ImagePipeline
    from .jobs import Job, JobConsole, run_job
    from .pipeline import Evaluates, check_options
    from .sample_data import shipped_model

    sample = domain.sample
    pipeline = domain.pipeline or ImagePipeline(reader=lambda p: domain.reader_for(p)(p), suffixes=tuple(domain.readers),
                                                name=domain.name)
    inputs = sample_inputs(domain, pipeline)
    if sample.root is not None and not (sample_root(domain) / sample.model).is_file():
        raise SampleMissing(f"no shipped model {sample_root(domain) / sample.model}")
    model = shipped_model(domain)
    job = Job(pipeline=pipeline, inputs=inputs, checkpoint=model, output=output / "run",
              options=check_options(pipeline.options, dict(sample.options)), device=device, command=f"demo {domain.name}")
    result = run_job(job, console=JobConsole(quiet=True))
    if result.failed:
        first = result.failed[0]
        return ReportSection.failed(domain.name, f"failed: {len(result.failed)} of {len(result.results)} sample input(s) "
                                                 f"failed, first: {first.error}")
    class_map = read_card(model).classes
    section = pipeline.report_section(result.records, class_map, output)
    if sample.note:
        section.notes.insert(0, sample.note)
    if sample.labels is not None and isinstance(pipeline, Evaluates):
        labels = sample_root(domain) / sample.labels
        if not labels.exists():
            raise SampleMissing(f"no shipped sample {labels}")
        evaluation = pipeline.evaluate(model, labels, output / "evaluation", device=device)
        pipeline.add_evaluation(section, evaluation, output / "evaluation")
    return section


def run_demo(output: str | Path, *, device: str = "cpu", domains: Sequence[str] | None = None, train: bool = True,
             epochs: int = 6, images: int = 64, seed: int = 0, registry: Any = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``output``; returns the summary written to ``summary.json`` plus the ``text`` to print."""
    from .io import write_json

    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    known = registry.domains
    names = sorted(known) if domains is None else list(dict.fromkeys(domains))
    for name in names:
        registry.domain(name)  # an unknown name is a one-line error before anything runs
    sections: list[ReportSection] = []
    seconds: dict[str, float] = {}
    for name in names:
        dom = known[name]
        t0 = time.perf_counter()
        if dom.sample is None:
            sections.append(ReportSection.skipped(name, f"the plugin of the {name} domain ships no sample"))
            log(f"{name}: skipped (no sample)")
            continue
        log(f"{name}: running the shipped model on the sample data")
        try:
            section = domain_section(dom, out / name, device)
        except (SampleMissing, NotImplementedYet) as exc:
            section = ReportSection.skipped(name, f"skipped: {exc}")
        except Exception as exc:  # noqa: BLE001 - one domain's failure must not take the demo down
            section = ReportSection.failed(name, f"failed: {' '.join(str(exc).split()) or type(exc).__name__}")
        seconds[name] = round(time.perf_counter() - t0, 2)
        if section.status == "ok":
            section.notes.append(f"{seconds[name]:.1f} s on {device}, outputs in {name}/")
        else:
            log(f"{name}: {section.notes[0]}")
        sections.append(section)
    if train:
        t0 = time.perf_counter()
        sections.append(training_section(out / "training", epochs=epochs, images=images, seed=seed, device=device, log=log))
        seconds["training"] = round(time.perf_counter() - t0, 2)
    from . import __version__

    index = write_report(out / "index.html", sections, title="segsuite demo",
                         intro=[f"segsuite {__version__}: every installed domain on its shipped sample data with its "
                                f"shipped default model, evaluated against the sample labels, on {device}."
                                + (" Last: a short training run of the generic 2D workflow." if train else ""),
                                "Research and demonstration outputs; the medical results are not for diagnostic use."])
    failed = [s.domain for s in sections if s.status == "failed"]
    summary = {
        "output": str(out),
        "report": str(index),
        "device": device,
        "sections": [{"domain": s.domain, "title": s.title, "status": s.status, "facts": dict(s.facts), "notes": list(s.notes)}
                     for s in sections],
        "seconds": seconds,
        "failed": failed,
    }
    write_json(out / "summary.json", summary)
    from .report import text_summary

    summary["text"] = text_summary(sections)
    return summary


def training_section(out: Path, *, epochs: int, images: int, seed: int, device: str,
                     log: Callable[[str], None] = print) -> ReportSection:
    """Label -> split -> train -> evaluate -> segment on generated shapes; the section shows each step's result."""
    from . import tasks
    from .data.datasets import scan_pairs, write_manifest
    from .data.images import read_image
    from .data.split import split_pairs
    from .data.synthetic import SHAPES, make_shapes_dataset
    from .report import Evaluation, fmt, write_preview
    from .trainer import TrainConfig

    log(f"training: generating {images} labelled images (seed {seed}), splitting 70/15/15")
    data = make_shapes_dataset(out / "data", n=images, seed=seed)
    parts = split_pairs(scan_pairs(data), (0.7, 0.15, 0.15), seed=seed)
    manifests = {name: write_manifest(out / "splits" / f"{name}.csv", items) for name, items in parts.items()}
    log(f"training: a U-Net (ResNet-18 encoder), {epochs} epoch(s) on {device}")
    cfg = TrainConfig(model="unet", model_options={"encoder": "resnet18"}, epochs=epochs, batch_size=8, lr=2e-3,
                      device=device, seed=seed, tensorboard=False, warmup_epochs=0.5)
    fit = tasks.train(manifests["train"], SHAPES, out / "run", cfg, val=manifests["val"], log=lambda _m: None)
    log("training: evaluating the best checkpoint on the held-out test split and segmenting it")
    metrics = tasks.evaluate(fit.best_checkpoint, manifests["test"], out / "evaluation", device=device)
    test_images = [p.image for p in parts["test"]]
    predictions = tasks.predict_images(fit.best_checkpoint, test_images, out / "predictions", device=device)

    section = ReportSection(domain="training", title="Training: the generic 2D workflow on generated shapes", legend=SHAPES)
    counts = {k: len(v) for k, v in parts.items()}
    section.facts += [("images", "/".join(str(counts[k]) for k in ("train", "val", "test")) + " train/val/test"),
                      ("epochs", str(fit.epochs_run)), ("test mean IoU", fmt(metrics.mean_iou))]
    section.notes.append("segsuite split, train, evaluate and run on 64 generated images of discs and boxes on texture: "
                         "a U-Net with a ResNet-18 encoder trained from scratch, the best epoch by validation mIoU "
                         "evaluated on the held-out test split.")
    write_preview(training_chart(fit.history), out / "training_curves.png")
    section.images.append(("training loss and validation mIoU per epoch", out / "training_curves.png"))
    for p, record in list(zip(test_images, predictions))[:4]:
        stem = read_image(p).name
        section.images.append((f"{stem}: test image", p))
        section.images.append((f"{stem}: prediction overlay", Path(record["outputs"]["overlay"])))
    section.tables.append(Table("Training log", ["epoch", "train loss", "validation loss", "validation mIoU", "seconds"],
                                [[r["epoch"], r.get("train_loss"), r.get("val_loss"), r.get("mean_iou"), r.get("time_s")]
                                 for r in fit.history]))
    section.evaluation = Evaluation.from_metrics(metrics.to_dict(), confusion=out / "evaluation" / "confusion.png",
                                                 extra=[("mean BF score", metrics.mean_bf)],
                                                 source=out / "evaluation" / "metrics.json")
    section.files += [("training log (CSV)", out / "run" / "log.csv"), ("per-image metrics (CSV)", out / "evaluation" / "per_image.csv"),
                      ("test split (CSV)", manifests["test"])]
    return section


def training_chart(history: Sequence[dict[str, Any]], size: tuple[int, int] = (260, 520)) -> np.ndarray:
    """Training loss (blue, scaled to its maximum) and validation mIoU (orange, 0..1) per epoch, as RGB."""
    import cv2

    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 46, 16, 14, 34
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (180, 180, 180), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    n = len(history)

    def xy(i: int, v: float) -> tuple[int, int]:
        x = left + (w - right - left) * (i / max(n - 1, 1))
        return int(round(x)), int(round(h - bottom - (h - bottom - top) * v))

    losses = [float(r.get("train_loss", float("nan"))) for r in history]
    top_loss = max((v for v in losses if np.isfinite(v)), default=1.0) or 1.0
    series = [([v / top_loss for v in losses], (31, 119, 180), f"train loss (max {top_loss:.3g})"),
              ([float(r["mean_iou"]) if r.get("mean_iou") is not None else float("nan") for r in history],
               (255, 127, 14), "validation mIoU")]
    for values, colour, _ in series:
        pts = [xy(i, v) for i, v in enumerate(values) if np.isfinite(v)]
        for a, b in zip(pts, pts[1:]):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
    for v in (0.0, 0.5, 1.0):
        cv2.putText(img, f"{v:.1f}", (6, xy(0, v)[1] + 4), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(img, f"epoch 1..{n}", (left, h - 12), font, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    x = left + 120
    for _, colour, label in series:
        cv2.rectangle(img, (x, h - 22), (x + 12, h - 12), colour, -1)
        cv2.putText(img, label, (x + 16, h - 12), font, 0.4, (40, 40, 40), 1, cv2.LINE_AA)
        x += 30 + 8 * len(label)
    return img
