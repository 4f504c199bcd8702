"""Self-contained HTML reports of what segsuite produced: pictures, legends, tables, metrics.

A report is a list of :class:`ReportSection` (one per domain or command) rendered to one
``index.html``. The page is plain HTML with inline CSS (no JavaScript, nothing fetched from
the network); every picture and data file it shows is a file in the report's folder,
referenced by a relative path, so the folder can be zipped, copied or served as it is. A
file that lives elsewhere (an input image, a run's output folder) is copied into
``files/`` beside the page. Every piece of text goes through :func:`html.escape`.

Sections are plain data; the helpers below build the common parts (display previews,
confusion pictures, metric blocks from ``SegmentationMetrics.to_dict()``-shaped results)
so that plugins describe their outputs without writing HTML.
"""

from __future__ import annotations

import html
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .classmap import ClassMap
from .errors import InputFileError, SegsuiteError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
"""Formats every browser displays in an ``<img>`` (TIFF and 16-bit-only formats are not among them)."""
COPY_LIMIT = 32 * 1024 * 1024
"""Linked data files outside the report folder are copied into it up to this size; larger ones
(a probability raster of a large scene) are named with their location instead."""


@dataclass(frozen=True)
class Table:
    """A titled table: ``header`` names the columns, each row has one value per column."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(f"table {self.title!r}: row {i} has {len(row)} values for {len(self.header)} columns")


@dataclass(frozen=True)
class Evaluation:
    """Metrics against reference labels: per-class IoU/Dice, their means and a confusion picture.

    ``per_class`` maps a class name to ``{"iou", "dice", "pixels"}`` (``None`` where a class is
    in neither truth nor prediction); ``extra`` holds further ``(name, value)`` numbers the
    domain reports (part-level recall, category IoU...); ``source`` is the metrics file.
    """

    per_class: Mapping[str, Mapping[str, Any]]
    mean_iou: float | None
    mean_dice: float | None = None
    accuracy: float | None = None
    confusion: Path | None = None
    extra: Sequence[tuple[str, Any]] = ()
    source: Path | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], *, confusion: Path | None = None,
                     extra: Sequence[tuple[str, Any]] = (), source: Path | None = None) -> "Evaluation":
        """From the dictionary :meth:`SegmentationMetrics.to_dict` returns (as in ``metrics.json``)."""
        try:
            per_class = {name: {"iou": v.get("iou"), "dice": v.get("dice"), "pixels": v.get("pixels")}
                         for name, v in metrics["per_class"].items()}
        except (KeyError, AttributeError, TypeError):
            raise SegsuiteError("metrics have no per-class results (expected a 'per_class' mapping)") from None
        return cls(per_class=per_class, mean_iou=metrics.get("mean_iou"), mean_dice=metrics.get("mean_dice"),
                   accuracy=metrics.get("global_accuracy"), confusion=confusion, extra=tuple(extra), source=source)


@dataclass
class ReportSection:
    """What one domain (or one command) shows in a report.

    ``images`` are ``(caption, path)`` pairs of browser-displayable pictures; ``files`` are
    ``(label, path)`` links to data files (JSON, CSV, GeoTIFF...); ``facts`` are the headline
    ``(name, value)`` numbers, shown at the top of the section and in the text summary.
    A section whose ``status`` is ``"skipped"`` or ``"failed"`` shows only its notes.
    """

    domain: str
    title: str
    images: list[tuple[str, Path]] = field(default_factory=list)
    legend: ClassMap | None = None
    tables: list[Table] = field(default_factory=list)
    evaluation: Evaluation | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)
    status: Literal["ok", "skipped", "failed"] = "ok"

    @classmethod
    def skipped(cls, domain: str, reason: str) -> "ReportSection":
        return cls(domain=domain, title=domain, notes=[reason], status="skipped")

    @classmethod
    def failed(cls, domain: str, reason: str) -> "ReportSection":
        return cls(domain=domain, title=domain, notes=[reason], status="failed")

    def add_uncertainty(self, record: Mapping[str, Any], picture: Path, name: str) -> None:
        """The uncertainty picture of one input, when its run wrote one (``--uncertainty``)."""
        if record.get("uncertainty") and picture.is_file():
            self.images.append((f"{name}: uncertainty ({record['uncertainty'].get('method')}), 0 to 1", picture))


# -- building blocks ------------------------------------------------------------------


def fmt(value: Any) -> str:
    """How a table cell reads: 4 significant digits for floats, a dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return str(value)


def write_preview(image: Any, path: str | Path, max_side: int = 768, *, nearest: bool = False) -> Path:
    """Write a picture for the page: any raw image (``(C, H, W)``, ``(H, W)``, any dtype, or
    ``(H, W, 3)`` RGB uint8) as an 8-bit RGB PNG no larger than ``max_side`` on its long side.
    ``nearest`` keeps label colours exact when shrinking."""
    import cv2
    import numpy as np

    from .data.images import write_image
    from .visualize import to_display_rgb

    arr = np.asarray(image)
    rgb = arr if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8 else to_display_rgb(arr)
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    return write_image(path, np.ascontiguousarray(rgb))


def write_confusion(confusion: Any, names: Sequence[str], path: str | Path) -> Path:
    """The row-normalised confusion chart of :func:`segsuite.core.visualize.confusion_chart` as a PNG."""
    import numpy as np

    from .data.images import write_image
    from .visualize import confusion_chart

    return write_image(path, confusion_chart(np.asarray(confusion), list(names)))


def flat_numbers(data: Mapping[str, Any], skip: Sequence[str] = (), prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar numbers of a (nested) result dictionary as ``("a b", value)`` pairs, lists left out."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key in skip:
            continue
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, Mapping):
            out += flat_numbers(value, skip, f"{prefix}{key} ")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) or value is None:
            out.append((name, value))
    return out


_METRIC_KEYS = ("per_class", "confusion_matrix", "normalized_confusion_matrix", "per_image", "global_accuracy",
                "mean_accuracy", "mean_iou", "weighted_iou", "mean_dice", "mean_bf_score", "checkpoint", "data", "parts")


def evaluation_section(result: Mapping[str, Any], class_map: ClassMap | None, output: Path | None, report_dir: Path,
                       *, domain: str = "evaluation", title: str = "Evaluation", max_rows: int = 50) -> ReportSection:
    """A section for what ``segsuite evaluate`` returned: the pixel metrics (top level, or under
    ``pixel_metrics`` / ``voxel_metrics`` as industrial and medical nest them), the confusion
    picture, per-image scores and the domain's other numbers (part-level rates, category IoU...)."""
    result = result if isinstance(result, Mapping) else {}
    nested = next((k for k in ("pixel_metrics", "voxel_metrics") if isinstance(result.get(k), Mapping)), None)
    pixel = result if "per_class" in result or nested is None else result[nested]
    if not isinstance(pixel, Mapping) or "per_class" not in pixel or "confusion_matrix" not in pixel:
        numbers = flat_numbers(result)
        return ReportSection(domain=domain, title=title, legend=class_map,
                             tables=[Table("Results", ["measure", "value"], [list(n) for n in numbers])] if numbers else [],
                             notes=["the evaluation returned no per-class pixel metrics; its numbers are listed as returned"])
    names = list(pixel["per_class"])
    confusion = write_confusion(pixel["confusion_matrix"], names, Path(report_dir) / "confusion.png")
    extra = flat_numbers(result, skip=(*_METRIC_KEYS, "pixel_metrics", "voxel_metrics"))
    source = Path(output) / "metrics.json" if output is not None and (Path(output) / "metrics.json").is_file() else None
    section = ReportSection(domain=domain, title=title, legend=class_map,
                            evaluation=Evaluation.from_metrics(pixel, confusion=confusion, extra=extra, source=source))
    per_image = [r for r in pixel.get("per_image") or () if isinstance(r, Mapping) and "image" in r]
    if per_image:
        cols = [k for k in ("mean_iou", "global_accuracy", "mean_bf_score") if k in per_image[0]]
        worst = sorted(per_image, key=lambda r: (r.get("mean_iou") is None, r.get("mean_iou") or 0.0))[:max_rows]
        what = "Per image, lowest mean IoU first" + (f" ({max_rows} of {len(per_image)})" if len(per_image) > max_rows else "")
        section.tables.append(Table(what, ["image", *(c.replace("_", " ") for c in cols)],
                                    [[r["image"], *(r.get(c) for c in cols)] for r in worst]))
    for rows_key in ("parts",):
        rows = result.get(rows_key)
        if isinstance(rows, list) and rows and isinstance(rows[0], Mapping):
            keys = list(rows[0])
            section.tables.append(Table(rows_key.capitalize(), keys, [[r.get(k) for k in keys] for r in rows[:max_rows]]))
    section.facts.append(("mean IoU", fmt(pixel.get("mean_iou"))))
    if pixel.get("global_accuracy") is not None:
        section.facts.append(("pixel accuracy", fmt(pixel["global_accuracy"])))
    if output is not None:
        for extra_file in ("per_image.csv",):
            if (Path(output) / extra_file).is_file():
                section.files.append((extra_file, Path(output) / extra_file))
    return section


def predictions_section(records: Sequence[Mapping[str, Any]], class_map: ClassMap, *, domain: str = "run",
                        title: str = "Segmentation", max_pictures: int = 12) -> ReportSection:
    """A section for the core's 2D outputs: each record's ``outputs["overlay"]`` and class shares."""
    section = ReportSection(domain=domain, title=title, legend=class_map)
    rows = []
    for s in records:
        name = Path(s["input"]).name
        overlay = s.get("outputs", {}).get("overlay")
        if overlay and len(section.images) < max_pictures:
            section.images.append((f"{name}: overlay", Path(overlay)))
        frac = s.get("fraction", {})
        rows.append([name, "x".join(map(str, s.get("size", []))),
                     *(f"{100 * frac.get(n, 0.0):.1f}" for n in class_map.names)])
    section.tables.append(Table("Class shares per image (%)", ["image", "size", *class_map.names], rows))
    if len(records) > max_pictures:
        section.notes.append(f"pictures of the first {max_pictures} of {len(records)} images; every result is in the run's folder")
    section.facts.append(("images", str(len(records))))
    return section


def summaries_section(domain: str, summaries: Sequence[Mapping[str, Any]], class_map: ClassMap | None) -> ReportSection:
    """For a pipeline without its own report section: one table row per result with the plain values it returned."""
    keys: list[str] = []
    for s in summaries:
        keys += [k for k, v in s.items() if k not in keys and (v is None or isinstance(v, (str, int, float, bool)))]
    rows = [[s.get(k) for k in keys] for s in summaries]
    section = ReportSection(domain=domain, title=f"{domain}: results", legend=class_map,
                            tables=[Table("Results", keys, rows)] if keys else [],
                            notes=[f"the {domain} plugin does not describe its outputs in pictures; this table lists what its pipeline returned"])
    section.facts.append(("results", str(len(summaries))))
    return section


def check_report_folder(path: str | Path) -> Path:
    """Refuse a ``--report`` target that cannot become a folder, before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SegsuiteError(f"{path}: --report needs a folder (it will hold index.html and its pictures), not a file")
    return path


def legend_items(class_map: ClassMap) -> list[tuple[str, str]]:
    """``(name, '#rrggbb')`` per class, in train-id order: what the legend shows."""
    return [(name, "#{:02x}{:02x}{:02x}".format(*colour)) for name, colour in zip(class_map.names, class_map.colors)]


# -- rendering ------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232a;background:#f5f6f8}
header{background:#1d2b3a;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:1.5em}
header p{margin:2px 0;color:#c9d3dd}main{padding:10px 28px 40px;max-width:1400px}
nav ul{list-style:none;padding:0;margin:12px 0}nav li{margin:3px 0}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:18px 0;padding:14px 20px}
section.skipped,section.failed{background:#fafafa}section.failed{border-color:#d9534f}
h2{margin:4px 0 10px;font-size:1.25em}h3{font-size:1.02em;margin:16px 0 6px}
.status{font-size:.75em;padding:2px 7px;border-radius:9px;margin-left:8px;vertical-align:middle;color:#fff}
.status.ok{background:#2e7d32}.status.skipped{background:#8a8f98}.status.failed{background:#c62828}
.facts{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0 10px;padding:0;list-style:none}
.facts li{background:#eef2f6;border-radius:4px;padding:4px 10px}.facts b{margin-right:6px;font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #ccd;display:block;image-rendering:auto}
figcaption{font-size:.85em;color:#4a525c;margin-top:3px;max-width:520px}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;padding:0;list-style:none;margin:4px 0}
.legend li{display:flex;align-items:center;font-size:.9em}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #555;margin-right:5px;border-radius:2px}
table{border-collapse:collapse;font-size:.88em;margin:4px 0 8px}th,td{border:1px solid #d4d8dd;padding:3px 8px;text-align:left}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.notes{color:#4a525c;font-size:.9em}.files a,.files span{margin-right:14px;display:inline-block}
"""


class _Assets:
    """Turns file paths into relative URLs from the page, copying outside files into ``files/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.copied: dict[Path, str] = {}
        self.pending: list[tuple[Path, Path]] = []

    def url(self, path: Path, what: str, *, picture: bool) -> str | None:
        """The relative URL, or ``None`` for a data file too large to copy into the report."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: {what} not found; the report would show a broken picture or link")
        if picture and path.suffix.lower() not in PICTURE_SUFFIXES:
            raise SegsuiteError(f"{path}: {what} is not a picture browsers display ({', '.join(PICTURE_SUFFIXES)})")
        real = path.resolve()
        try:
            rel = real.relative_to(self.root).as_posix()
        except ValueError:
            rel = self.copied.get(real)
            if rel is None and not picture and real.stat().st_size > COPY_LIMIT:
                return None
            if rel is None:
                rel = f"files/{len(self.copied):03d}_{real.name}"
                self.copied[real] = rel
                self.pending.append((real, self.root / rel))
        return quote(rel)

    def copy(self) -> None:
        from .io import atomic_path

        for src, dst in self.pending:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], swatches: Mapping[str, str] | None = None) -> str:
    out = [f"<h3>{_e(title)}</h3>", "<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = _e(fmt(v))
            if j == 0 and swatches and str(v) in swatches:
                text = f'<span class="swatch" style="background:{swatches[str(v)]}"></span>{text}'
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _figure(caption: str, url: str) -> str:
    return f'<figure><img src="{_e(url)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _section_html(section: ReportSection, assets: _Assets) -> str:
    anchor = _anchor(section.domain)
    parts = [f'<section id="{_e(anchor)}" class="{_e(section.status)}">',
             f'<h2>{_e(section.title)}<span class="status {_e(section.status)}">{_e(section.status)}</span></h2>']
    if section.facts:
        parts.append('<ul class="facts">' + "".join(f"<li><b>{_e(k)}</b>{_e(v)}</li>" for k, v in section.facts) + "</ul>")
    if section.notes:
        parts.append('<div class="notes">' + "".join(f"<p>{_e(n)}</p>" for n in section.notes) + "</div>")
    swatches: dict[str, str] = {}
    if section.legend is not None:
        items = legend_items(section.legend)
        swatches = dict(items)
        parts.append("<h3>Classes</h3>")
        parts.append('<ul class="legend">' + "".join(
            f'<li><span class="swatch" style="background:{colour}"></span>{_e(name)}</li>' for name, colour in items) + "</ul>")
    if section.images:
        parts.append('<div class="gallery">' + "".join(
            _figure(caption, assets.url(path, f"picture {caption!r}", picture=True)) for caption, path in section.images) + "</div>")
    for t in section.tables:
        parts.append(_table(t.title, t.header, t.rows, swatches))
    ev = section.evaluation
    if ev is not None:
        rows = [[name, v.get("iou"), v.get("dice"), v.get("pixels")] for name, v in ev.per_class.items()]
        parts.append(_table("Evaluation against the reference labels", ["class", "IoU", "Dice", "truth pixels"], rows, swatches))
        summary = [("mean IoU", ev.mean_iou), ("mean Dice", ev.mean_dice), ("pixel accuracy", ev.accuracy), *ev.extra]
        parts.append(_table("Summary metrics", ["metric", "value"], [[k, v] for k, v in summary if v is not None or k == "mean IoU"]))
        if ev.confusion is not None:
            parts.append('<div class="gallery">' + _figure("confusion matrix (rows: truth, columns: prediction, row-normalised)",
                                                         assets.url(ev.confusion, "confusion matrix picture", picture=True)) + "</div>")
        if ev.source is not None and not any(Path(p) == Path(ev.source) for _, p in section.files):
            section = _with_file(section, ("metrics", ev.source))
    if section.files:
        links = []
        for label, path in section.files:
            url = assets.url(path, f"file {label!r}", picture=False)
            links.append(f'<a href="{_e(url)}">{_e(label)}</a>' if url is not None else
                         f"<span>{_e(label)} (not copied, {Path(path).stat().st_size / 2**20:.0f} MiB: {_e(Path(path).resolve())})</span>")
        parts.append('<p class="files">Files: ' + "".join(links) + "</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _with_file(section: ReportSection, entry: tuple[str, Path]) -> ReportSection:
    from dataclasses import replace

    return replace(section, files=[*section.files, entry])


def _anchor(domain: str) -> str:
    return "s-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in domain)


def render_html(sections: Sequence[ReportSection], root: Path, *, title: str = "segsuite report",
                intro: Sequence[str] = ()) -> tuple[str, _Assets]:
    """The page's HTML for a report whose folder is ``root``, and the files it still has to copy there.

    Raises a one-line error naming the file when a picture or linked file is missing."""
    assets = _Assets(Path(root))
    body = [_section_html(s, assets) for s in sections]
    toc = "".join(
        f'<li><a href="#{_e(_anchor(s.domain))}">{_e(s.title)}</a> \u2014 {_e(s.status)}'
        + (f": {_e(s.notes[0])}" if s.status != "ok" and s.notes else "") + "</li>" for s in sections)
    page = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<header><h1>{_e(title)}</h1>" + "".join(f"<p>{_e(line)}</p>" for line in intro) + "</header>",
        "<main>", f"<nav><ul>{toc}</ul></nav>", *body, "</main>", "</body>", "</html>",
    ]
    return "\n".join(page) + "\n", assets


def write_report(path: str | Path, sections: Sequence[ReportSection], *, title: str = "segsuite report",
                 intro: Sequence[str] = ()) -> Path:
    """Write the report page (``path`` is the HTML file, or a folder to hold ``index.html``).

    Every picture and file is checked before anything is written; files outside the page's
    folder are copied into ``files/``; the page itself is written atomically."""
    from .io import atomic_path

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    page, assets = render_html(sections, path.parent, title=title, intro=intro)
    assets.copy()
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def text_summary(sections: Sequence[ReportSection], width: int = 100) -> str:
    """One or two lines per section for the terminal: status and headline numbers (or the reason it was skipped)."""
    import textwrap

    lines = []
    for s in sections:
        what = ", ".join(f"{k} {v}" for k, v in s.facts) if s.status == "ok" else (s.notes[0] if s.notes else "")
        head = f"{s.domain:<11} {s.status:<8} "
        wrapped = textwrap.wrap(what, width=max(20, width - len(head)), max_lines=3, placeholder=" ...") or [""]
        lines.append(head + wrapped[0])
        lines += [" " * len(head) + w for w in wrapped[1:]]
    return "\n".join(lines)


def relative_to_cwd(path: Path) -> str:
    """How a path reads best in a message: relative when under the working folder."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel
