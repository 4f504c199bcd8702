"""The driving section of reports (``run --report`` and the demo): frames with their classes, drivable
area and objects; videos as film strips with their speed and flicker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.classmap import ClassMap
from segsuite.core.report import ReportSection, Table, fmt


def filmstrip(video: Path, target: Path, frames: int = 4, height: int = 128) -> Path:
    """Evenly spaced frames of ``video`` side by side, as a PNG (browsers cannot play OpenCV's mp4v)."""
    import cv2

    from segsuite.core.errors import InputFileError
    from segsuite.core.report import write_preview

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise InputFileError(f"{video}: not a readable video (OpenCV cannot open it)")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or frames
        picks = sorted({round(i * (total - 1) / max(frames - 1, 1)) for i in range(frames)})
        tiles = []
        for index in picks:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok:
                scale = height / frame.shape[0]
                frame = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
                tiles.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                tiles.append(np.full((height, 4, 3), 255, np.uint8))
    finally:
        cap.release()
    if not tiles:
        raise InputFileError(f"{video}: no frame could be decoded")
    return write_preview(np.concatenate(tiles[:-1], axis=1), target, max_side=4096)


def _by_class(objects: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for o in objects:
        counts[o["class"]] = counts.get(o["class"], 0) + 1
    return ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "none"


def driving_section(records: Sequence[Mapping[str, Any]], class_map: ClassMap | None, report_dir: Path,
                    max_frames: int = 8) -> ReportSection:
    """What ``segsuite run driving`` wrote: per frame the overlay and the drivable area, the objects found;
    per video a strip of overlay frames, the speed and the flicker with and without smoothing.

    Each record carries the paths its run wrote (``outputs``); pictures made for the page
    (input previews, film strips) go to ``report_dir``."""
    from segsuite.core.data.images import read_image
    from segsuite.core.report import write_preview

    report_dir = Path(report_dir)
    section = ReportSection(domain="driving", title="Driving: street scenes and video", legend=class_map)
    frames = [r for r in records if "video" not in r and "objects" in r]
    videos = [r for r in records if "video" in r]
    drivable_rows, object_rows = [], []
    for n, r in enumerate(frames):
        src, outs = Path(r["input"]), {k: Path(v) for k, v in r["outputs"].items()}
        base = outs["record"].stem  # the stem the executor planned ({stem}.json)
        if n < max_frames:
            section.images.append((f"{src.name}", write_preview(read_image(src).array, report_dir / f"{base}_input.png")))
            section.images.append((f"{base}: classes over the frame", outs["overlay"]))
            section.images.append((f"{base}: drivable area (white)", outs["drivable"]))
            if "uncertainty" in outs:
                section.add_uncertainty(r, outs["uncertainty"], base)
            section.files.append((outs["record"].name, outs["record"]))
        drivable_rows.append([src.name, round(100 * r["drivable_fraction"], 2), len(r["objects"]), _by_class(r["objects"])])
        for o in r["objects"]:
            x, y, w, h = o["bbox_xywh"]
            object_rows.append([o["class"], src.name, o["area_px"], f"{x},{y} {w}x{h}"])
    if frames:
        section.tables.append(Table("Drivable area and objects per frame", ["frame", "drivable (%)", "objects", "by class"], drivable_rows))
    if object_rows:
        section.tables.append(Table("Objects (connected regions of person, car, ... classes)", ["class", "frame", "area (px)", "box x,y w x h"],
                                    object_rows))
    for v in videos:
        video, outs = Path(v["input"]), {k: Path(p) for k, p in v["outputs"].items()}
        overlay_video = outs["overlay_video"]
        strip = filmstrip(overlay_video, report_dir / f"{overlay_video.stem}_frames.png")
        section.images.append((f"{overlay_video.name}: overlay frames from start to end", strip))
        section.files.append((overlay_video.name, overlay_video))
        if outs["record"].is_file():
            section.files.append((outs["record"].name, outs["record"]))
        detail = v.get("frames_detail", [])
        per_frame = [len(f["objects"]) for f in detail]
        rows = [["frames", v["frames"]], ["size", f"{v['size'][1]}x{v['size'][0]}"], ["input fps", v.get("input_fps")],
                ["fps achieved (decode, infer, overlay, encode)", v.get("fps_achieved")],
                ["flicker, raw (% pixels changing label per frame)", round(100 * v["flicker_raw"], 3)]]
        if v.get("smoothing"):
            rows.append([f"flicker, smoothed with weight {v['smoothing']} (%)", round(100 * v["flicker_smoothed"], 3)])
        if detail:
            rows += [["mean drivable area (%)", round(100 * float(np.mean([f["drivable_fraction"] for f in detail])), 2)],
                     ["objects per frame (min / mean / max)", f"{min(per_frame)} / {np.mean(per_frame):.1f} / {max(per_frame)}"]]
        section.tables.append(Table(f"Video {video.name}", ["measure", "value"], rows))
    if len(frames) > max_frames:
        section.notes.append(f"pictures of the first {max_frames} of {len(frames)} frames; the tables list all")
    if frames:
        section.facts += [("frames", str(len(frames))),
                          ("mean drivable area", f"{100 * np.mean([r['drivable_fraction'] for r in frames]):.1f} %"),
                          ("objects", str(sum(len(r["objects"]) for r in frames)))]
    for v in videos:
        section.facts.append((f"video {Path(v['input']).name}", f"{v['frames']} frames at {fmt(v.get('fps_achieved'))} fps"))
    return section
