"""Industrial plugin: defects as components, verdicts, calibration policies, outputs, batches, default model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error
from segsuite.core.data.images import read_image_array, write_image
from segsuite.core.errors import SegsuiteError
from segsuite.plugins.industrial.calibrate import choose_threshold, part_metrics, part_score
from segsuite.plugins.industrial.classes import SURFACE
from segsuite.plugins.industrial.inspection import find_defects, heatmap
from segsuite.plugins.industrial.synthetic import make_parts

SAMPLE = ROOT / "sample_data" / "industrial"
MODEL = SAMPLE / "model.safetensors"


def probs_with(regions: list[tuple[slice, slice, int, float]], shape=(40, 50)) -> np.ndarray:
    p = np.zeros((4, *shape), np.float32)
    p[0] = 1.0
    for ys, xs, cls, conf in regions:
        p[:, ys, xs] = (1 - conf) / 3
        p[0, ys, xs] = 1 - conf
        p[cls, ys, xs] = conf
    return p


def test_defects_are_connected_components_with_class_area_bbox_confidence():
    p = probs_with([(slice(5, 10), slice(5, 15), 1, 0.9), (slice(20, 22), slice(30, 32), 2, 0.8),
                    (slice(30, 38), slice(40, 45), 3, 0.7)])
    labels, defects, p_def = find_defects(p, SURFACE, threshold=0.5, min_area=5, pixel_size=0.1)
    assert [d["class"] for d in defects] == ["scratch", "crack"]  # the 4-pixel spot is below min_area
    scratch = defects[0]
    assert scratch["area_px"] == 50 and scratch["bbox_xywh"] == [5, 5, 10, 5]
    assert scratch["max_confidence"] == pytest.approx(0.9) and scratch["area_mm2"] == pytest.approx(0.5)
    assert (labels[5:10, 5:15] == 1).all() and labels[20, 30] == 0 and (labels[30:38, 40:45] == 3).all()
    _, none, _ = find_defects(probs_with([]), SURFACE, 0.5, 5)
    assert none == []


def test_heatmap_uses_one_global_scale():
    faint = heatmap(np.full((8, 8), 0.02, np.float32))
    strong = heatmap(np.full((8, 8), 0.9, np.float32))
    # a good part stays dark: a per-image stretch would have turned the faint map bright
    assert faint.mean() < 20 and strong.mean() > faint.mean() + 100
    assert (faint == faint[0, 0]).all()


def test_part_score_is_the_highest_ng_threshold():
    p = np.zeros((30, 30), np.float32)
    p[2:6, 2:6] = 0.7  # 16 px
    p[20:22, 20:22] = 0.95  # 4 px
    assert part_score(p, min_area=10) == pytest.approx(0.7, abs=1e-4)
    assert part_score(p, min_area=1) == pytest.approx(0.95, abs=1e-4)
    assert part_score(p, min_area=100) == 0.0


def test_calibration_policies():
    truth = np.array([1] * 10 + [0] * 10, bool)
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.2] + [0.5, 0.4, 0.3, 0.25, 0.1, 0, 0, 0, 0, 0])
    t = choose_threshold(scores, truth, "recall", 0.9)
    assert t == 0.55 and part_metrics(scores, truth, t)["recall"] == 0.9
    t = choose_threshold(scores, truth, "recall", 1.0)
    assert t == 0.2 and part_metrics(scores, truth, t)["recall"] == 1.0
    t = choose_threshold(scores, truth, "far", 0.1)
    m = part_metrics(scores, truth, t)
    assert m["false_alarm_rate"] == 0.1 and 0.4 < t <= 0.5 + 1e-9
    t = choose_threshold(scores, truth, "f1", None)
    assert part_metrics(scores, truth, t)["f1"] == max(part_metrics(scores, truth, float(c))["f1"] for c in np.unique(scores[scores > 0]))
    with pytest.raises(SegsuiteError, match="no defective parts"):
        choose_threshold(scores[~truth], truth[~truth], "recall", 0.99)
    with pytest.raises(SegsuiteError, match="no good parts"):
        choose_threshold(scores[truth], truth[truth], "far", 0.01)


def test_run_industrial_writes_every_output(tmp_path, cli):
    res = cli("run", "industrial", "--input", SAMPLE / "parts" / "images", "--output", tmp_path / "out", "--device", "cpu",
              "--pixel-size", "0.05")
    assert res.exit_code == 0, res.output
    assert "OK " in res.stdout and "NG " in res.stdout
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert len(rows) == len(list((SAMPLE / "parts" / "images").glob("*.png")))
    for row in rows:
        stem = Path(row["input"]).stem
        rec = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert row["status"] == "ok" and rec["verdict"] == row["verdict"] in ("OK", "NG")
        assert int(row["defects"]) == len(rec["defects"]) and float(row["max_defect_probability"]) == rec["max_defect_probability"]
        assert row["classes"] == ";".join(sorted({d["class"] for d in rec["defects"]}))
        assert rec["image"] == row["input"] and rec["outputs"]["mask"] == row["mask"]
        size = read_image_array(row["input"]).shape[:2]
        assert read_image_array(tmp_path / "out" / f"{stem}_mask.png").shape == size
        assert read_image_array(tmp_path / "out" / f"{stem}_heatmap.png").shape == (*size, 3)
        assert read_image_array(tmp_path / "out" / f"{stem}_overlay.png").shape == (*size, 3)
        for d in rec["defects"]:
            assert d["area_mm2"] == pytest.approx(d["area_px"] * 0.0025, rel=1e-3)


def test_colour_16_bit_and_high_resolution_inputs(tmp_path, cli):
    grey = read_image_array(next((SAMPLE / "parts" / "images").glob("ng_*.png")))
    write_image(tmp_path / "in" / "colour.png", np.repeat(grey[..., None], 3, axis=2))
    write_image(tmp_path / "in" / "deep.png", grey.astype(np.uint16) * 257)
    big = np.tile(grey, (3, 3))[:700, :600]
    write_image(tmp_path / "in" / "big.png", big)
    res = cli("run", "industrial", "--input", tmp_path / "in", "--output", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 0, res.output
    recs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json") if p.stem != "summary"}
    assert recs["colour"]["verdict"] == recs["deep"]["verdict"] == "NG"
    assert recs["big"]["size"] == [700, 600] and recs["big"]["verdict"] == "NG"
    assert len(recs["big"]["defects"]) >= len(recs["colour"]["defects"])  # the tiled copies are found too


BROKEN = b"\x89PNG\r\n\x1a\n garbage"


def copy_parts(folder: Path, n: int = 2) -> list[Path]:
    """The first ``n`` shipped parts (good_005, then the NG ones) copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in sorted((SAMPLE / "parts" / "images").glob("*.png"))[:n]]


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_a_bad_file_or_option_is_one_error_line(tmp_path, cli):
    (tmp_path / "broken.png").write_bytes(BROKEN)
    assert_one_line_error(cli("run", "industrial", "--input", tmp_path / "broken.png", "--output", tmp_path / "o1",
                              "--device", "cpu"), "broken.png: not a readable image")
    assert [i["status"] for i in summary_of(tmp_path / "o1")["inputs"]] == ["failed"]
    # options are checked before any input is read (this input does not even exist)
    for flag, value, message in (("--threshold", "1.5", "--threshold 1.5: must be between 0 and 1"),
                                 ("--threshold", "0", "--threshold 0.0: must be between 0 and 1"),
                                 ("--min-area", "-1", "--min-area -1: must be at least 0"),
                                 ("--pixel-size", "0", "--pixel-size 0.0: must be greater than 0"),
                                 ("--uncertainty", "dice", "--uncertainty 'dice': choose one of entropy, tta, mcdropout")):
        assert_one_line_error(cli("run", "industrial", "--input", tmp_path / "nowhere", flag, value), message)


def test_bad_files_first_and_last_do_not_stop_the_batch(tmp_path, cli):
    batch, out = tmp_path / "batch", tmp_path / "out"
    good = copy_parts(batch, 2)
    for name in ("aaa_broken.png", "zzz_broken.png"):  # sorted before and after every good part
        (batch / name).write_bytes(BROKEN)
    res = cli("run", "industrial", "--input", batch, "--output", out, "--device", "cpu")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error: ")]
    assert len(errors) == 3, res.stderr
    assert "aaa_broken.png: not a readable image" in errors[0] and "zzz_broken.png: not a readable image" in errors[1]
    assert errors[2].startswith("segsuite: error: 2 of 4 failed; see ") and "summary.json" in errors[2]
    assert "OK 1   NG 1   (2 parts)" in res.stdout
    summary = summary_of(out)
    assert summary["counts"] == {"ok": 2, "failed": 2, "skipped": 0, "not run": 0}
    entries = {Path(i["input"]).name: i for i in summary["inputs"]}
    for name in ("aaa_broken.png", "zzz_broken.png"):
        assert entries[name]["status"] == "failed" and name in entries[name]["error"]
        assert not any(Path(p).exists() for p in entries[name]["outputs"].values())
    for part in good:
        entry = entries[part.name]
        assert entry["status"] == "ok" and all(Path(p).is_file() for p in entry["outputs"].values())
        assert json.loads(Path(entry["outputs"]["record"]).read_text())["verdict"] == ("OK" if "good" in part.name else "NG")
    rows = {Path(r["input"]).name: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["aaa_broken.png"]["status"] == "failed" and rows["aaa_broken.png"]["verdict"] == ""
    assert rows["ng_000.png"]["verdict"] == "NG"


def test_a_tiny_image_does_not_stop_the_batch(tmp_path, cli):
    batch, out = tmp_path / "batch", tmp_path / "out"
    good = copy_parts(batch, 2)
    write_image(batch / "tiny.png", np.full((8, 8), 120, np.uint8))  # sorts last
    res = cli("run", "industrial", "--input", batch, "--output", out, "--device", "cpu")
    assert "Traceback" not in res.stderr
    entries = {Path(i["input"]).name: i for i in summary_of(out)["inputs"]}
    assert len(entries) == 3
    for part in good:
        assert entries[part.name]["status"] == "ok" and (out / f"{part.stem}_overlay.png").is_file()
    tiny = entries["tiny.png"]
    if tiny["status"] == "ok":
        assert res.exit_code == 0 and read_image_array(out / "tiny_mask.png").shape == (8, 8)
    else:
        assert res.exit_code == 2 and "tiny.png" in tiny["error"] and "tiny.png" in res.stderr


def test_same_stem_inputs_keep_their_own_outputs(tmp_path, cli):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_image(folder / "part.png", read_image_array(SAMPLE / "parts" / "images" / "ng_000.png"))
    write_image(folder / "part.bmp", read_image_array(SAMPLE / "parts" / "images" / "good_005.png"))
    res = cli("run", "industrial", "--input", folder, "--output", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    entries = {Path(i["input"]).name: i for i in summary_of(out)["inputs"]}
    assert sorted(entries) == ["part.bmp", "part.png"]
    paths = [Path(p) for e in entries.values() for p in e["outputs"].values()]
    assert len(set(paths)) == len(paths) == 8 and all(p.is_file() for p in paths)
    records = {name: json.loads(Path(e["outputs"]["record"]).read_text()) for name, e in entries.items()}
    assert records["part.png"]["verdict"] == "NG" and records["part.bmp"]["verdict"] == "OK"
    assert Path(records["part.png"]["image"]).name == "part.png" and Path(records["part.bmp"]["image"]).name == "part.bmp"
    assert read_image_array(entries["part.png"]["outputs"]["mask"]).any()
    assert not read_image_array(entries["part.bmp"]["outputs"]["mask"]).any()


def test_rerun_into_the_input_folder_skips_its_own_outputs(tmp_path, cli):
    folder = tmp_path / "d"
    parts = copy_parts(folder, 2)
    for _ in range(2):
        res = cli("run", "industrial", "--input", folder, "--output", folder, "--device", "cpu")
        assert res.exit_code == 0, res.output
        inputs = [Path(i["input"]).name for i in summary_of(folder)["inputs"]]
        assert inputs == [p.name for p in parts], inputs
    assert (folder / "ng_000_mask.png").is_file() and (folder / "ng_000_heatmap.png").is_file()


def test_run_industrial_help_lists_its_own_options(cli):
    res = cli("run", "industrial", "--help")
    assert res.exit_code == 0, res.output
    for flag in ("--threshold", "--min-area", "--pixel-size", "--uncertainty", "--input", "--skip-existing"):
        assert flag in res.stdout, flag
    for flag in ("--smooth", "--tta", "--fast", "--keep-largest", "--fill-holes", "--min-volume", "--probabilities",
                 "--format"):
        assert flag not in res.stdout, flag


def test_calibrate_stores_threshold_with_provenance(tmp_path, cli):
    val = make_parts(tmp_path / "val", n=16, seed=77)
    res = cli("calibrate", "--model", MODEL, "--data", val, "--policy", "recall", "--target", "0.99",
              "--output", tmp_path / "calibrated.safetensors", "--device", "cpu")
    assert res.exit_code == 0, res.output
    from segsuite.core.checkpoint import read_card

    th = read_card(tmp_path / "calibrated.safetensors").thresholds
    assert 0 < th["defect_probability"] < 1 and th["min_area_px"] == 10
    prov = th["provenance"]
    assert prov["policy"] == "recall" and prov["target"] == 0.99 and prov["achieved"]["recall"] >= 0.99
    assert prov["parts"]["defective"] + prov["parts"]["good"] == 16
    good_only = tmp_path / "good"
    for p in (val / "images").glob("good_*.png"):
        for sub in ("images", "masks"):
            (good_only / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(val / sub / p.name, good_only / sub / p.name)
    assert_one_line_error(cli("calibrate", "--model", MODEL, "--data", good_only, "--target", "0.99"),
                          "the validation set has no defective parts")
    bad = next((good_only / "masks").glob("*.png"))
    write_image(bad, np.zeros((10, 12), np.uint8))
    assert_one_line_error(cli("calibrate", "--model", MODEL, "--data", good_only, "--target", "0.99"),
                          f"{bad.name}: mask is 12x10, its image 256x256")
    write_image(bad, np.full((256, 256), 9, np.uint8))
    assert_one_line_error(cli("calibrate", "--model", MODEL, "--data", good_only, "--target", "0.99"),
                          "mask values [9] are not classes of the model")


@pytest.mark.slow
def test_default_model_part_level_recall_and_precision(tmp_path, cli):
    fresh = make_parts(tmp_path / "fresh", n=40, seed=2026)  # seeds the model never saw
    res = cli("run", "industrial", "--input", fresh / "images", "--output", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    truth = np.array([Path(r["input"]).name.startswith("ng_") for r in rows])
    pred = np.array([r["verdict"] == "NG" for r in rows])
    recall = (pred & truth).sum() / truth.sum()
    precision = (pred & truth).sum() / max(pred.sum(), 1)
    assert recall >= 0.95 and precision >= 0.9, (recall, precision)


def test_pixel_auroc_matches_torchmetrics():
    import torch
    from torchmetrics.functional.classification import binary_auroc

    from segsuite.plugins.industrial.metrics import pixel_auroc

    rng = np.random.default_rng(0)
    truth = rng.random(5000) < 0.1
    scores = np.round(np.where(truth, rng.normal(0.7, 0.2, 5000), rng.normal(0.4, 0.2, 5000)), 2)  # with ties
    ours = pixel_auroc(scores, truth)
    ref = binary_auroc(torch.from_numpy(scores), torch.from_numpy(truth.astype(np.int64))).item()
    # torchmetrics sums in float32 (about 7 significant digits); ours in float64
    assert ours == pytest.approx(ref, rel=1e-5)


def test_aupro_perfect_and_blind():
    from segsuite.plugins.industrial.metrics import aupro

    mask = np.zeros((40, 40), np.uint8)
    mask[5:10, 5:10] = 1
    mask[20:35, 20:35] = 1
    perfect = mask.astype(np.float32) * 0.9 + 0.05
    assert aupro([perfect], [mask]) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(1)
    blind = rng.random((40, 40)).astype(np.float32)
    assert 0.05 < aupro([blind], [mask]) < 0.3  # random scores: PRO follows FPR, area ~ 0.15
    # a missed small defect costs as much as a missed large one (per-region averaging)
    half = np.full(mask.shape, 0.02, np.float32)
    half[5:10, 5:10] = 0.01  # the small defect scores below any good pixel: missed at every FPR
    half[20:35, 20:35] = 0.95
    assert aupro([half], [mask]) == pytest.approx(0.5, abs=0.05)


def test_evaluate_industrial(tmp_path, cli):
    test = make_parts(tmp_path / "test", n=10, seed=99)
    res = cli("evaluate", "industrial", "--model", MODEL, "--data", test, "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["part_level"]["parts"] == 10 and m["pixel_auroc"] > 0.9 and 0 <= m["aupro_0.3"] <= 1
    assert m["defects"]["found"] + m["defects"]["missed"] > 0
    assert "escapes per 1000 parts" in res.stdout


def test_run_industrial_uncertainty_map(tmp_path, cli):
    part = SAMPLE / "parts" / "images" / "ng_000.png"
    res = cli("run", "industrial", "--input", part, "--output", tmp_path / "out", "--device", "cpu",
              "--uncertainty", "entropy")
    assert res.exit_code == 0, res.output
    heat = read_image_array(tmp_path / "out" / "ng_000_uncertainty.png")
    assert heat.shape == (*read_image_array(part).shape[:2], 3)
    rec = json.loads((tmp_path / "out" / "ng_000.json").read_text())
    assert rec["uncertainty"]["method"] == "entropy" and 0 <= rec["uncertainty"]["mean"] <= rec["uncertainty"]["max"] <= 1
    # the model hesitates along the defect's border, not on the plain surface
    assert rec["uncertainty"]["max"] > 10 * rec["uncertainty"]["mean"]
    res = cli("run", "industrial", "--input", part, "--output", tmp_path / "mc", "--uncertainty", "mcdropout")
    assert_one_line_error(res, "MC dropout needs a model with dropout layers")
    assert not [p for p in (tmp_path / "mc").glob("*") if not p.name.startswith(".")]  # the model is refused before any part
