"""``segsuite run driving``: one street frame or one whole video per input, through the core executor.

Frames get train-id labels, colours, an overlay, the drivable area and the objects found
(and, on request, an uncertainty map and Cityscapes label-id files for the official
evaluation script); a video gets an overlay video and per-frame statistics, optionally
smoothed over time. The executor expands the inputs (a Cityscapes ``leftImg8bit/val`` folder
finds the frames in its city sub-folders), plans the paths, isolates failures and writes
``summary.json``; this module only segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segsuite.core.errors import SegsuiteError
from segsuite.core.image_pipeline import UNCERTAINTY
from segsuite.core.pipeline import BasePipeline, RunContext, RunOption

from .scenes import VIDEO_SUFFIXES, check_smooth, run_video, segment_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CITYSCAPES_SUFFIX = "_leftImg8bit"


def is_video(path: Path) -> bool:
    """Whether ``path`` is a video input (one input = the whole video)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class DrivingPipeline(BasePipeline):
    """Per frame: ``{stem}_labels.png`` (train ids), ``{stem}_color.png``, ``{stem}_overlay.png``,
    ``{stem}_drivable.png``, ``{stem}.json`` (drivable share, objects); with ``--uncertainty``
    ``{stem}_uncertainty.png``; with ``--format cityscapes`` ``cityscapes_results/{stem}_labelIds.png``.
    Per video: ``{stem}_overlay.mp4`` and ``{stem}_video.json`` (fps, flicker, per-frame statistics).
    A Cityscapes frame ``{city}_{seq}_{frame}_leftImg8bit.png`` has the stem ``{city}_{seq}_{frame}``.
    """

    name = "driving"
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    max_report_frames = 8
    options = (
        RunOption("label_format", str, None, flag="--format", choices=("cityscapes",),
                  help="Also write Cityscapes label ids (cityscapes_results/{stem}_labelIds.png) for the official "
                       "evaluation script; needs a model with the Cityscapes class map"),
        RunOption("smooth", float, None, validate=check_smooth,
                  help="Video: temporal smoothing, the weight of the newest frame in (0, 1] (e.g. 0.5); "
                       "the video's record reports the flicker with and without it"),
        UNCERTAINTY,
    )

    def stem(self, source: Path) -> str:
        """The file name without its suffix and without Cityscapes' ``_leftImg8bit``."""
        stem = super().stem(source)
        if stem.endswith(CITYSCAPES_SUFFIX) and len(stem) > len(CITYSCAPES_SUFFIX):
            stem = stem[: -len(CITYSCAPES_SUFFIX)]
        return stem

    def load(self, checkpoint: Path, options: Mapping[str, Any], device: str) -> Any:
        from segsuite.core.pipeline import load_predictor

        predictor = load_predictor(checkpoint, device, options, spatial_dims=2, what="a street scene")
        if options.get("label_format") == "cityscapes" and predictor.class_map.raw_ids is None:
            raise SegsuiteError(f"{checkpoint}: --format cityscapes needs a model with the Cityscapes class map (label ids)")
        return predictor

    def outputs(self, source: Path, stem: str, folder: Path, options: Mapping[str, Any],
                file: Path | None = None) -> dict[str, Path]:
        if is_video(source):
            return {"overlay_video": folder / f"{stem}_overlay.mp4", "record": folder / f"{stem}_video.json"}
        outs = {"labels": folder / f"{stem}_labels.png", "color": folder / f"{stem}_color.png",
                "overlay": folder / f"{stem}_overlay.png", "drivable": folder / f"{stem}_drivable.png"}
        if options.get("uncertainty"):
            outs["uncertainty"] = folder / f"{stem}_uncertainty.png"
        if options.get("label_format") == "cityscapes":
            # its own folder: the official script globs <city>_<seq>_<frame>* and needs exactly one match
            outs["label_ids"] = folder / "cityscapes_results" / f"{stem}_labelIds.png"
        outs["record"] = folder / f"{stem}.json"
        return outs

    def run_one(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        from segsuite.core.drift import watch_input  # the first frame the model gets, against its training data

        with watch_input(context.model, source, context.warn) as drift:
            return {**self._segment(source, outputs, context), **drift.fields}

    def _segment(self, source: Path, outputs: Mapping[str, Path], context: RunContext) -> dict[str, Any]:
        options = context.options
        if is_video(source):
            if options.get("uncertainty"):
                raise SegsuiteError(f"{source}: --uncertainty maps are written for images only, not video; "
                                    "run the video without it or extract frames first")
            return run_video(context.model, source, outputs["overlay_video"], smooth=options.get("smooth"),
                             progress=context.progress)
        return segment_image(context.model, source, outputs, options.get("label_format"), options.get("uncertainty"))

    def describe(self, record: Mapping[str, Any]) -> str:
        name = Path(record.get("input") or record.get("image") or record.get("video", "")).name
        if "video" in record:
            smooth = record.get("smoothing")
            return (f"{name}: {record['frames']} frames at {record['fps_achieved']} fps, "
                    f"flicker {100 * record['flicker_raw']:.2f} % raw"
                    + (f", {100 * record['flicker_smoothed']:.2f} % smoothed ({smooth})" if smooth else "")
                    + f" -> {record['output']}")
        return f"{name}: drivable {100 * record['drivable_fraction']:.1f} %, {len(record['objects'])} object(s)"

    def report_section(self, records: Sequence[Mapping[str, Any]], class_map: Any, report_dir: Path) -> Any:
        from .report import driving_section

        return driving_section(records, class_map, report_dir, max_frames=self.max_report_frames)

    # -- Evaluates ----------------------------------------------------------------------

    def evaluate(self, checkpoint: Path, data: Path, output: Path | None, *, device: str = "auto") -> dict[str, Any]:
        """Per-class IoU, mIoU (ignore label excluded) and Cityscapes category IoU; see
        :func:`.evaluate.evaluate_scenes` for the layouts ``data`` may be in."""
        from .evaluate import evaluate_scenes

        return evaluate_scenes(checkpoint, data, output, device=device)

    def describe_evaluation(self, result: Mapping[str, Any]) -> str:
        from .evaluate import describe_scores

        return describe_scores(result)

    def add_evaluation(self, section: Any, result: Mapping[str, Any], output: Path) -> None:
        from .evaluate import add_scores

        add_scores(section, result, output)
