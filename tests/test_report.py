"""HTML reports: the renderer (escaping, legends, files), --report on commands, the demo page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error
from segsuite.core.classmap import ClassMap
from segsuite.core.data.images import write_image
from segsuite.core.errors import InputFileError, SegsuiteError
from segsuite.core.report import Evaluation, ReportSection, Table, fmt, legend_items, text_summary, write_report

SAMPLE = ROOT / "sample_data"


class _Page(HTMLParser):
    """Collects what a page references and how many tables it has."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tables = 0
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(a["src"])
        if tag in ("a", "link") and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "table":
            self.tables += 1


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def assert_self_contained(index: Path) -> _Page:
    """Every picture and link is a relative path to an existing file inside the report folder; no script."""
    from urllib.parse import unquote

    page = parse(index)
    root = index.parent.resolve()
    for ref in page.srcs + [h for h in page.hrefs if not h.startswith("#")]:
        assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("/"), ref  # no http:, file:, data:, absolute paths
        target = (root / unquote(ref)).resolve()
        assert target.is_file() and root in target.parents, ref
    assert "script" not in page.tags
    return page


def picture(path: Path, colour=(10, 120, 200), size=(12, 20)) -> Path:
    return write_image(path, np.full((*size, 3), colour, np.uint8))


CLASSES = ClassMap(names=("background", "road <u>", 'car "A"'), colors=((0, 0, 0), (30, 100, 220), (255, 128, 1)))


# -- renderer -------------------------------------------------------------------------


def test_text_is_escaped_everywhere(tmp_path):
    hostile = '<script>alert("x")</script> & <em>'
    img = picture(tmp_path / "pics" / "a b&c.png")
    section = ReportSection(domain="d<1>", title=f"title {hostile}", images=[(f"caption {hostile}", img)], legend=CLASSES,
                            tables=[Table(f"table {hostile}", ["col <1>", "n"], [[hostile, 3]])],
                            facts=[(hostile, hostile)], notes=[f"note {hostile}"])
    index = write_report(tmp_path, [section], title=f"report {hostile}", intro=[hostile])
    text = index.read_text()
    assert "<script" not in text and "<em>" not in text and "<u>" not in text
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;em&gt;") >= 7
    assert "road &lt;u&gt;" in text and "car &quot;A&quot;" in text
    page = assert_self_contained(index)
    assert page.srcs == ["pics/a%20b%26c.png"]  # URL-quoted, then attribute-escaped


def test_legend_swatches_use_the_class_map_colours(tmp_path):
    index = write_report(tmp_path, [ReportSection(domain="x", title="x", legend=CLASSES)])
    text = index.read_text()
    legend = text[text.index('<ul class="legend">'):]
    legend = legend[: legend.index("</ul>")]
    swatches = re.findall(r'background:(#[0-9a-f]{6})"></span>([^<]*)</li>', legend)
    assert swatches == [("#000000", "background"), ("#1e64dc", "road &lt;u&gt;"), ("#ff8001", "car &quot;A&quot;")]
    assert legend_items(CLASSES)[2] == ('car "A"', "#ff8001")


def test_missing_picture_is_an_error_naming_it_and_nothing_is_written(tmp_path):
    good = picture(tmp_path / "good.png")
    section = ReportSection(domain="x", title="x", images=[("fine", good), ("gone", tmp_path / "gone.png")])
    with pytest.raises(InputFileError, match=r"gone\.png: picture 'gone' not found"):
        write_report(tmp_path / "report", [section])
    assert not (tmp_path / "report" / "index.html").exists()
    ev = Evaluation(per_class={"a": {"iou": 1.0, "dice": 1.0}}, mean_iou=1.0, confusion=tmp_path / "no_confusion.png")
    with pytest.raises(InputFileError, match="no_confusion.png"):
        write_report(tmp_path / "report", [ReportSection(domain="x", title="x", evaluation=ev)])
    (tmp_path / "scene.tif").write_bytes(b"II*\0")
    with pytest.raises(SegsuiteError, match="scene.tif: picture 'tif' is not a picture browsers display"):
        write_report(tmp_path / "report", [ReportSection(domain="x", title="x", images=[("tif", tmp_path / "scene.tif")])])
    assert not (tmp_path / "report" / "index.html").exists()


def test_outside_files_are_copied_and_large_data_files_are_named_not_copied(tmp_path, monkeypatch):
    from segsuite.core import report

    elsewhere = tmp_path / "elsewhere"
    img = picture(elsewhere / "overlay.png")
    data = elsewhere / "big.tif"
    data.write_bytes(b"x" * 100)
    (elsewhere / "m.json").write_text("{}")
    monkeypatch.setattr(report, "COPY_LIMIT", 50)
    section = ReportSection(domain="x", title="x", images=[("o", img), ("o again", img)],
                            files=[("metrics", elsewhere / "m.json"), ("raster", data)])
    index = write_report(tmp_path / "rep" / "page.html", [section])
    page = assert_self_contained(index)
    assert page.srcs == ["files/000_overlay.png", "files/000_overlay.png"]  # one copy for both uses
    assert (tmp_path / "rep" / "files" / "000_overlay.png").read_bytes() == img.read_bytes()
    assert page.hrefs[-1:] == ["files/001_m.json"] and not (tmp_path / "rep" / "files" / "002_big.tif").exists()
    assert f"raster (not copied, 0 MiB: {data.resolve()})" in index.read_text()


def test_evaluation_block_and_text_summary(tmp_path):
    conf = picture(tmp_path / "confusion.png")
    ev = Evaluation.from_metrics({"per_class": {"road <u>": {"iou": 0.5, "dice": 2 / 3, "pixels": 12345},
                                                "car": {"iou": None, "dice": None, "pixels": 0}},
                                  "mean_iou": 0.5, "mean_dice": 2 / 3, "global_accuracy": 0.75},
                                 confusion=conf, extra=[("part recall", 1.0)])
    sections = [ReportSection(domain="seg", title="Seg", evaluation=ev, legend=CLASSES, facts=[("mean IoU", fmt(0.5))]),
                ReportSection.skipped("vol", "no shipped sample sample_data/vol/x.nii.gz")]
    index = write_report(tmp_path, sections)
    text = index.read_text()
    assert parse(index).tables == 2
    assert "<td>car</td><td>\u2013</td><td>\u2013</td><td class=\"num\">0</td>" in text  # no IoU: a dash
    assert '<td class="num">0.5</td><td class="num">0.6667</td><td class="num">12,345</td>' in text
    assert "part recall" in text and "confusion.png" in text
    assert 'class="skipped"' in text and "no shipped sample sample_data/vol/x.nii.gz" in text
    summary = text_summary(sections)
    assert summary.splitlines()[0].split() == ["seg", "ok", "mean", "IoU", "0.5"]
    assert "skipped" in summary and "no shipped sample" in summary
    assert fmt(float("nan")) == "\u2013" and fmt(None) == "\u2013" and fmt(123456) == "123,456" and fmt(0.00001) == "1.000e-05"


# -- --report on commands -------------------------------------------------------------


def test_run_report_for_industrial_parts(tmp_path, cli):
    parts = SAMPLE / "industrial" / "parts" / "images"
    res = cli("run", "industrial", "--input", parts / "ng_001.png", "--output", tmp_path / "out",
              "--report", tmp_path / "rep", "--device", "cpu")
    assert res.exit_code == 0, res.output
    index = tmp_path / "rep" / "index.html"
    page = assert_self_contained(index)
    assert len(page.srcs) == 3 and page.tables >= 1  # input, overlay, heatmap; the verdict table
    text = index.read_text()
    assert "ng_001.png" in text and ">NG<" in text and "background:#ff3cc8" in text  # spot's colour in the legend


def test_evaluate_report_and_report_must_be_a_folder(tmp_path, cli):
    model = SAMPLE / "industrial" / "model.safetensors"
    (tmp_path / "file").write_text("")
    assert_one_line_error(cli("evaluate", "industrial", "--model", model, "--data", SAMPLE / "industrial" / "parts",
                              "--report", tmp_path / "file"), "file: --report needs a folder")
    res = cli("evaluate", "industrial", "--model", model, "--data", SAMPLE / "industrial" / "parts",
              "--output", tmp_path / "ev", "--report", tmp_path / "rep", "--device", "cpu")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "index.html").read_text()
    page = assert_self_contained(tmp_path / "rep" / "index.html")
    assert page.srcs == ["confusion.png"] and page.tables >= 3
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert f"{metrics['pixel_metrics']['mean_iou']:.4g}" in text and "part level recall" in text


def test_tile_report(tmp_path, cli):
    res = cli("tile", SAMPLE / "satellite" / "scene.tif", "--output", tmp_path / "out", "--report", tmp_path / "rep",
              "--tile", "256", "--overlap", "32", "--device", "cpu")
    assert res.exit_code == 0, res.output
    page = assert_self_contained(tmp_path / "rep" / "index.html")
    assert len(page.srcs) == 3 and page.tables == 1
    summary = json.loads((tmp_path / "out" / "scene_classes.json").read_text())
    text = (tmp_path / "rep" / "index.html").read_text()
    assert f"{summary['classes']['water']['pixels']:,}" in text and "km²" in text


# -- the demo page in a real browser --------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHECKER = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var out = document.createElement("pre");
  out.id = "segsuite-check";
  out.textContent = JSON.stringify({images: imgs.length, broken: broken.map(function (i) { return i.getAttribute("src"); }),
                                    tables: document.querySelectorAll("table").length,
                                    rows: document.querySelectorAll("tr").length});
  document.body.appendChild(out);
});
</script>
"""


def browser_check(chromium: str, index: Path) -> dict:
    """Load a copy of the page with a checker script in headless Chromium; what the checker saw after ``load``."""
    probe = index.with_name("_browser_check.html")
    probe.write_text(index.read_text().replace("</body>", CHECKER + "</body>"))
    try:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="segsuite-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the checker did not run (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("chromium not found even after `make test` tried to install it (apt-get install chromium)")
    return path


def test_demo_report_renders_in_chromium(tmp_path, cli, chromium):
    res = cli("demo", "--output", tmp_path / "demo", "--domains", "satellite,driving", "--no-train", "--device", "cpu")
    assert res.exit_code == 0, res.output
    index = tmp_path / "demo" / "index.html"
    page = assert_self_contained(index)
    seen = browser_check(chromium, index)
    assert seen["broken"] == [] and seen["images"] == len(page.srcs) >= 2 * 3 + 4 * 3 + 1
    assert seen["tables"] == page.tables >= 6 and seen["rows"] > 40
    text = index.read_text()
    for heading in ("land-cover areas", "Drivable area and objects per frame", "Video drive.mp4",
                    "Evaluation against the reference labels", "confusion matrix"):
        assert heading in text
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [s["status"] for s in summary["sections"]] == ["ok", "ok"]
    assert [s["domain"] for s in summary["sections"]] == ["satellite", "driving"]
    assert all(float(s["facts"]["mean IoU"]) > 0.8 for s in summary["sections"])  # shipped models on their samples
    assert "report:" in res.stdout and "satellite" in res.stdout

    shutil.copy(index, tmp_path / "demo" / "broken.html")  # the check can fail: remove one picture
    (tmp_path / "demo" / "satellite" / "evaluation" / "scene_labels.png").unlink()
    assert browser_check(chromium, tmp_path / "demo" / "broken.html")["broken"] == ["satellite/evaluation/scene_labels.png"]


def test_demo_skips_domains_without_shipped_samples(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("SEGSUITE_SAMPLE_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    res = cli("demo", "--output", tmp_path / "demo", "--domains", "industrial,satellite", "--no-train")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [(s["domain"], s["status"]) for s in summary["sections"]] == [("industrial", "skipped"), ("satellite", "skipped")]
    assert "no shipped sample" in summary["sections"][0]["notes"][0]
    text = (tmp_path / "demo" / "index.html").read_text()
    assert text.count('class="skipped"') == 2 and "no shipped sample" in text
    assert_one_line_error(cli("demo", "--output", tmp_path / "d2", "--domains", "nosuch"), "nosuch")


def test_medical_section_renders_in_chromium(tmp_path, chromium):
    if not (SAMPLE / "medical" / "model.safetensors").is_file():
        pytest.skip("no shipped medical sample and model in this checkout")
    from segsuite.core.demo import domain_section
    from segsuite.core.plugins import load_plugins

    section = domain_section(load_plugins(entry_points=False).domain("medical"), tmp_path / "medical", "cpu")
    index = write_report(tmp_path, [section])
    page = assert_self_contained(index)
    seen = browser_check(chromium, index)
    assert seen["broken"] == [] and seen["images"] == len(page.srcs) == 2 * 2 + 1 + 1  # 2 cases, reference, confusion
    text = index.read_text()
    assert "Volumes per structure" in text and "HD95 (mm)" in text and "mL" in text
    liver = [r for r in json.loads((tmp_path / "medical" / "run" / "phantom_007_000_seg.json").read_text())["classes"].items()
             if r[0] == "liver"][0][1]
    assert f"{liver['volume_ml']:.4g}" in text
