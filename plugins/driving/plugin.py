"""Driving scenes: Cityscapes/CamVid conventions, images and video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segsuite.core.data.images import read_image
from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import CAMVID, CITYSCAPES
from .demo import demo, run_report  # light: numpy and the report model only
from .synthetic import generate


def cityscapes_dataset(*args: Any, **kwargs: Any) -> Any:
    """Cityscapes layout: leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    from .datasets import cityscapes_format

    return cityscapes_format(*args, **kwargs)


def camvid_dataset(*args: Any, **kwargs: Any) -> Any:
    """CamVid (SegNet release): train/, trainannot/, val/, valannot/."""
    from .datasets import camvid_format

    return camvid_format(*args, **kwargs)


cityscapes_dataset.detect = lambda root: (Path(root) / "leftImg8bit").is_dir()  # type: ignore[attr-defined]
camvid_dataset.detect = lambda root: (Path(root) / "trainannot").is_dir()  # type: ignore[attr-defined]


def evaluate_driving(checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict:
    """``segsuite evaluate driving``: per-class IoU, mIoU (ignore excluded) and Cityscapes category IoU."""
    from .evaluate import evaluate_scenes

    return evaluate_scenes(checkpoint, data, output, device=device)


def _video_frames_only(path: Path) -> Any:
    from segsuite.core.errors import SegsuiteError

    raise SegsuiteError(f"{path}: a video; `segsuite run driving` streams it frame by frame")


def run_driving(inputs: list[Path], checkpoint: Path, output: Path | None, *, device: str = "auto",
                label_format: str | None = None, smooth: float | None = None, uncertainty: str | None = None) -> list[dict]:
    """``segsuite run driving``: images -> labels, colours, overlays, drivable area, objects (and uncertainty
    maps); videos -> overlay video."""
    import typer

    from segsuite.core.errors import SegsuiteError
    from segsuite.core.infer import Predictor

    from .scenes import VIDEO_SUFFIXES, run_images, run_video

    if label_format not in (None, "cityscapes"):
        raise SegsuiteError(f"--format {label_format!r}: the driving domain writes train ids, or label ids with --format cityscapes")
    videos = [p for p in inputs if p.suffix.lower() in VIDEO_SUFFIXES]
    if uncertainty is not None and videos:
        raise SegsuiteError(f"{videos[0]}: --uncertainty maps are written for images only, not video; "
                            "run the video without it or extract frames first")
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    if uncertainty == "mcdropout":
        from segsuite.core.uncertainty import require_dropout

        require_dropout(predictor.model)
    if label_format == "cityscapes" and predictor.class_map.raw_ids is None:
        raise SegsuiteError(f"{checkpoint}: --format cityscapes needs a model with the Cityscapes class map (label ids)")
    out = Path(output) if output is not None else Path("segsuite-run")
    out.mkdir(parents=True, exist_ok=True)
    images = [p for p in inputs if p.suffix.lower() not in VIDEO_SUFFIXES]
    records = run_images(predictor, images, out, label_format, uncertainty) if images else []
    for v in videos:
        r = run_video(predictor, v, out, smooth=smooth)
        typer.echo(f"{v.name}: {r['frames']} frames at {r['fps_achieved']} fps, flicker {100 * r['flicker_raw']:.2f} % "
                   f"raw" + (f", {100 * r['flicker_smoothed']:.2f} % smoothed ({smooth})" if smooth else "") + f" -> {r['output']}")
        records.append(r)
    for r in records:
        if "objects" in r:
            typer.echo(f"{Path(r['image']).name}: drivable {100 * r['drivable_fraction']:.1f} %, {len(r['objects'])} object(s)")
    return records


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="driving",
            description="Street scenes (Cityscapes / CamVid conventions), images and video",
            spatial_dims=2,
            in_channels=3,
            class_maps={"cityscapes": CITYSCAPES, "camvid": CAMVID},
            default_model=ModelSpec("resunet", {"channels": [16, 32, 64, 128], "num_res_units": 1}),
            patch_size=(128, 256),
            readers={".png": read_image, ".jpg": read_image, ".jpeg": read_image,
                     **{s: _video_frames_only for s in (".mp4", ".avi", ".mov", ".mkv")}},
            outputs=("colour label PNG", "label PNG", "overlay", "drivable-area mask", "objects JSON", "overlay video"),
            runner=run_driving,
            demo=demo,
            run_report=run_report,
            synthetic=generate,
            evaluator=evaluate_driving,
            dataset_formats={"cityscapes": cityscapes_dataset, "camvid": camvid_dataset},
        )
    ]
