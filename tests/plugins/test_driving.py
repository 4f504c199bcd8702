"""Driving plugin: image outputs in Cityscapes conventions, drivable area, objects, video pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.data.images import read_image_array, write_image
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins
from segsuite.plugins.driving.classes import CITYSCAPES
from segsuite.plugins.driving.formats import is_camvid, is_cityscapes
from segsuite.plugins.driving.scenes import drivable_mask, objects_of


@pytest.fixture(scope="module")
def city_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("segnet", 3, 19, registry=load_plugins(entry_points=False), widths=[8, 8])
    with torch.no_grad():  # an untrained net predicts one class everywhere; sharpen it so labels follow the pixels
        model.net.classifier.weight.mul_(50.0)
    card = ModelCard(model=model.card(), class_map=CITYSCAPES.to_dict(), domain="driving",
                     normalization={"kind": "zscore", "mean": [110.0] * 3, "std": [50.0] * 3})
    return save_checkpoint(tmp_path_factory.mktemp("m") / "city.safetensors", model, card)


def test_objects_and_drivable_area():
    labels = np.full((40, 60), CITYSCAPES.index("road"), np.uint8)
    labels[:10] = CITYSCAPES.index("sky")
    labels[15:25, 5:20] = CITYSCAPES.index("car")
    labels[15:25, 30:34] = CITYSCAPES.index("person")
    labels[30:32, 50:52] = CITYSCAPES.index("car")  # 4 px: below the minimum object size
    objs = objects_of(labels, CITYSCAPES)
    assert [(o["class"], o["bbox_xywh"]) for o in objs] == [("person", [30, 15, 4, 10]), ("car", [5, 15, 15, 10])]
    drivable = drivable_mask(labels, CITYSCAPES)
    assert drivable.sum() == (labels == CITYSCAPES.index("road")).sum()


def test_run_driving_images_with_cityscapes_naming(city_ckpt, tmp_path, cli):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "aachen_000000_000019_leftImg8bit.png", rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    res = cli("run", "driving", "--input", tmp_path / "in", "--model", city_ckpt, "--output", tmp_path / "out",
              "--format", "cityscapes", "--device", "cpu")
    assert res.exit_code == 0, res.output
    base = tmp_path / "out" / "aachen_000000_000019"
    train_ids = read_image_array(f"{base}_labels.png")
    label_ids = read_image_array(tmp_path / "out" / "cityscapes_results" / "aachen_000000_000019_labelIds.png")
    assert len(list((tmp_path / "out" / "cityscapes_results").glob("aachen_000000_000019*"))) == 1
    assert train_ids.shape == label_ids.shape == (48, 96)
    np.testing.assert_array_equal(CITYSCAPES.to_train_ids(label_ids), train_ids)  # label ids map back exactly
    assert set(np.unique(label_ids)) <= {lid for lid in range(34) if CITYSCAPES.raw_ids.get(lid, 255) != 255}
    assert read_image_array(f"{base}_color.png").shape == (48, 96, 3)
    assert read_image_array(f"{base}_drivable.png").shape == (48, 96)
    rec = json.loads((tmp_path / "out" / "aachen_000000_000019.json").read_text())
    assert 0 <= rec["drivable_fraction"] <= 1 and isinstance(rec["objects"], list)
    assert_one_line_error(cli("run", "driving", "--input", tmp_path / "in", "--model", city_ckpt, "--format", "kitti"),
                          "--format 'kitti'")


def _write_video(path, frames):
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()


def test_video_pipeline_reports_fps_and_flicker(city_ckpt, tmp_path, cli):
    rng = np.random.default_rng(1)
    base = rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)
    frames = [np.clip(base.astype(int) + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    _write_video(tmp_path / "drive.mp4", frames)
    res = cli("run", "driving", "--input", tmp_path / "drive.mp4", "--model", city_ckpt, "--output", tmp_path / "out",
              "--smooth", "0.3", "--device", "cpu")
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "drive_video.json").read_text())
    assert r["frames"] == 12 and r["fps_achieved"] > 0 and r["size"] == [48, 64]
    assert len(r["frames_detail"]) == 12 and isinstance(r["frames_detail"][0]["objects"], list)
    # noisy frames of a still scene: the raw labels flicker, the smoothed ones much less
    assert r["flicker_raw"] > 0 and r["flicker_smoothed"] < r["flicker_raw"]
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "out" / "drive_overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64
    assert "drive.mp4: 12 frames at" in res.stdout and "% smoothed (0.3)" in res.stdout
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    assert_one_line_error(cli("run", "driving", "--input", tmp_path / "broken.mp4", "--model", city_ckpt,
                              "--output", tmp_path / "o2"), "broken.mp4", "not a readable video")
    assert not list((tmp_path / "o2").glob("*.mp4")) and not (tmp_path / "o2" / "broken_video.json").exists()
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["counts"]["failed"] == 1 and "broken.mp4" in summary["inputs"][0]["error"]
    assert_one_line_error(cli("run", "driving", "--input", tmp_path / "drive.mp4", "--model", city_ckpt,
                              "--smooth", "1.5"), "--smooth 1.5 must be in (0, 1]")


def test_category_iou_merges_classes_within_a_category():
    from segsuite.plugins.driving.evaluate import category_iou

    names = CITYSCAPES.names
    conf = np.zeros((19, 19), np.int64)
    road, sidewalk, car, truck = (names.index(n) for n in ("road", "sidewalk", "car", "truck"))
    conf[road, sidewalk] = 10  # confused within "flat": a category hit
    conf[car, truck] = 5  # within "vehicle"
    conf[car, road] = 5  # across categories: a miss
    cats = category_iou(conf, names)
    assert cats["flat"] == pytest.approx(10 / 15) and cats["vehicle"] == pytest.approx(5 / 10)
    assert np.isnan(cats["sky"])


def test_cityscapes_layout_train_and_evaluate(city_ckpt, tmp_path, cli):
    rng = np.random.default_rng(3)
    for split, cities in (("train", ("aachen", "bonn")), ("val", ("lindau",))):
        for city in cities:
            for k in range(2):
                base = f"{city}_000000_{k:06d}"
                write_image(tmp_path / "cs" / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png",
                            rng.integers(0, 255, (32, 64, 3), dtype=np.uint8))
                label_ids = rng.choice([0, 7, 8, 11, 21, 23, 26], size=(32, 64)).astype(np.uint8)
                write_image(tmp_path / "cs" / "gtFine" / split / city / f"{base}_gtFine_labelIds.png", label_ids)
    from segsuite.plugins.driving.datasets import cityscapes_format

    ds = cityscapes_format(tmp_path / "cs", CITYSCAPES, train=False)
    sample = ds[0]
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 8, 10, 13, 255}  # train ids, unlabeled -> 255
    res = cli("train", "driving", "--data", tmp_path / "cs", "--val", tmp_path / "cs", "--model", "segnet",
              "-O", "widths=[8,8]", "--epochs", "1", "--batch-size", "2", "--patch-size", "32,32", "--device", "cpu",
              "--output", tmp_path / "run")
    assert res.exit_code == 0, res.output
    res = cli("evaluate", "driving", "--model", tmp_path / "run" / "best.safetensors", "--data", tmp_path / "cs",
              "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(m["per_class"]) == 19 and set(m["category_iou"]) == {"flat", "construction", "object", "nature", "sky", "human", "vehicle"}
    assert "category IoU" in res.stdout


DRIVING = __import__("conftest").ROOT / "sample_data" / "driving"


def test_run_driving_with_no_other_argument(tmp_path, segsuite_proc):
    res = subprocess_in(tmp_path, segsuite_proc, "run", "driving", "--input", DRIVING / "frames")  # shipped model
    assert res.returncode == 0, res.stderr
    outputs = sorted(p.name for p in (tmp_path / "segsuite-run").glob("*_color.png"))
    assert len(outputs) == len(list((DRIVING / "frames").glob("*.png")))
    res = subprocess_in(tmp_path, segsuite_proc, "run", "driving", "--input", DRIVING / "drive.mp4", "--smooth", "0.5")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "segsuite-run" / "drive_overlay.mp4").exists()


def subprocess_in(cwd, segsuite_proc, *args):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return segsuite_proc(*args)
    finally:
        os.chdir(old)


@pytest.mark.slow
def test_default_model_miou_on_fresh_scenes(tmp_path, cli):
    from segsuite.plugins.driving.synthetic import make_cityscapes

    root = make_cityscapes(tmp_path / "fresh", n_train=0, n_val=16, seed=2026)  # a seed the model never saw
    res = cli("evaluate", "driving", "--model", DRIVING / "model.safetensors", "--data", root, "--output", tmp_path / "ev",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["mean_iou"] >= 0.80, res.stdout


def test_run_driving_uncertainty_for_images_and_a_clear_error_for_video(city_ckpt, tmp_path, cli):
    import shutil

    from segsuite.core.infer import Predictor

    frame = ROOT / "sample_data" / "driving" / "frames" / "synthville_000007_000000_leftImg8bit.png"
    shutil.copy(frame, tmp_path / "street.png")
    res = cli("run", "driving", "--input", tmp_path / "street.png", "--output", tmp_path / "out", "--uncertainty", "tta",
              "--device", "cpu")  # the shipped model
    assert res.exit_code == 0, res.output
    image = read_image_array(frame)
    assert read_image_array(tmp_path / "out" / "street_uncertainty.png").shape == image.shape
    rec = json.loads((tmp_path / "out" / "street.json").read_text())
    # street scenes are mirrored left-right only: the model never saw an upside-down street
    predictor = Predictor.from_checkpoint(ROOT / "sample_data" / "driving" / "model.safetensors", device="cpu")
    chw = image.transpose(2, 0, 1)
    _, lr_only = predictor.probabilities_and_uncertainty(chw, "tta", flip_axes=(1,))
    _, all_flips = predictor.probabilities_and_uncertainty(chw, "tta")
    assert rec["uncertainty"]["method"] == "tta"
    assert rec["uncertainty"]["mean"] == pytest.approx(float(lr_only.mean()), abs=1e-4)
    assert float(all_flips.mean()) > 10 * float(lr_only.mean())
    _write_video(tmp_path / "drive.mp4", [np.ascontiguousarray(image[..., ::-1])] * 3)
    res = cli("run", "driving", "--input", tmp_path / "drive.mp4", "--model", city_ckpt, "--output", tmp_path / "v",
              "--uncertainty", "entropy")
    assert_one_line_error(res, "drive.mp4: --uncertainty maps are written for images only")
    assert not list((tmp_path / "v").glob("drive*"))  # refused before a frame was read: nothing written
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert [i["status"] for i in summary["inputs"]] == ["failed"]


def _cityscapes_frames(root, cities, per_city=2, size=(32, 64), seed=5):
    """``root/leftImg8bit/val/<city>/<city>_000000_00000k_leftImg8bit.png`` for each city."""
    rng = np.random.default_rng(seed)
    frames = []
    for city in cities:
        for k in range(per_city):
            path = root / "leftImg8bit" / "val" / city / f"{city}_000000_{k:06d}_leftImg8bit.png"
            write_image(path, rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            frames.append(path)
    return frames


def test_run_driving_finds_frames_in_city_subfolders(city_ckpt, tmp_path, cli):
    frames = _cityscapes_frames(tmp_path / "cs", ("aachen", "bonn", "lindau"))
    res = cli("run", "driving", "--input", tmp_path / "cs" / "leftImg8bit" / "val", "--model", city_ckpt,
              "--output", tmp_path / "out", "--format", "cityscapes", "--device", "cpu")
    assert res.exit_code == 0, res.output
    for frame in frames:
        stem = frame.name[: -len("_leftImg8bit.png")]
        for suffix in ("_labels.png", "_color.png", "_overlay.png", "_drivable.png", ".json"):
            assert (tmp_path / "out" / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
        assert (tmp_path / "out" / "cityscapes_results" / f"{stem}_labelIds.png").is_file()
        assert f"{frame.name}: drivable" in res.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["ok"] == len(frames) == 6
    rec = json.loads((tmp_path / "out" / "bonn_000000_000001.json").read_text())
    assert rec["input"] == str(frames[3]) and rec["outputs"]["label_ids"].endswith("bonn_000000_000001_labelIds.png")


def test_run_driving_batch_goes_on_past_bad_frames(city_ckpt, tmp_path, cli):
    frames = _cityscapes_frames(tmp_path / "cs", ("bonn",), per_city=3)
    folder = frames[0].parent
    first = folder / "aaa_000000_000000_leftImg8bit.png"
    first.write_bytes(b"this is not a png")
    last = folder / "zzz_000000_000000_leftImg8bit.png"
    last.write_bytes(frames[0].read_bytes()[:60])  # a PNG cut short: the header reads, the pixels do not
    res = cli("run", "driving", "--input", folder, "--model", city_ckpt, "--output", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 2, res.output
    for frame in frames:
        stem = frame.name[: -len("_leftImg8bit.png")]
        assert (tmp_path / "out" / f"{stem}_overlay.png").is_file() and (tmp_path / "out" / f"{stem}.json").is_file()
    assert not list((tmp_path / "out").glob("aaa_*")) and not list((tmp_path / "out").glob("zzz_*"))
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 3 and "Traceback" not in res.stderr
    assert first.name in errors[0] and last.name in errors[1] and "2 of 5 failed" in errors[2]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    status = {Path(i["input"]).name: i["status"] for i in summary["inputs"]}
    assert status == {first.name: "failed", last.name: "failed", **{f.name: "ok" for f in frames}}
    failed = [i for i in summary["inputs"] if i["status"] == "failed"]
    assert all(Path(i["input"]).name in i["error"] for i in failed)


def test_run_driving_help_lists_only_driving_options(cli):
    res = cli("run", "driving", "--help")
    assert res.exit_code == 0, res.output
    for flag in ("--format", "--smooth", "--uncertainty", "--input", "--skip-existing"):
        assert flag in res.stdout
    for flag in ("--threshold", "--tta", "--min-area", "--label-format"):
        assert flag not in res.stdout


def test_run_driving_report_shows_frames_and_video(tmp_path, cli):
    import shutil

    shutil.copytree(DRIVING / "frames", tmp_path / "in")
    shutil.copy(DRIVING / "drive.mp4", tmp_path / "in" / "drive.mp4")
    res = cli("run", "driving", "--input", tmp_path / "in", "--output", tmp_path / "out", "--smooth", "0.5",
              "--report", tmp_path / "report", "--device", "cpu")  # the shipped model
    assert res.exit_code == 0, res.output
    assert "drive.mp4: 30 frames at" in res.stdout and "% smoothed (0.5)" in res.stdout
    page = (tmp_path / "report" / "index.html").read_text()
    for text in ("Drivable area and objects per frame", "Video drive.mp4", "flicker, smoothed with weight 0.5",
                 "drive_overlay.mp4: overlay frames from start to end", "synthville_000007_000002: drivable area"):
        assert text in page
    assert (tmp_path / "report" / "drive_overlay_frames.png").is_file()
    video = json.loads((tmp_path / "out" / "drive_video.json").read_text())
    assert video["frames"] == 30 and video["outputs"]["overlay_video"] == str(tmp_path / "out" / "drive_overlay.mp4")


def test_sample_evaluates_on_its_named_frames_and_labels(tmp_path, cli):
    from segsuite.core.plugins import load_plugins

    sample = load_plugins(entry_points=False).domain("driving").sample
    assert all((DRIVING / spec).exists() for spec in sample.inputs) and sample.options == {"smooth": 0.5}
    res = cli("evaluate", "driving", "--model", DRIVING / "model.safetensors", "--data", DRIVING / sample.labels,
              "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["mean_iou"] > 0.8 and len(m["per_image"]) == len(list((DRIVING / "frames").glob("*.png")))
    assert f"mean IoU           {m['mean_iou']:.4f}" in res.stdout
    assert f"mean category IoU {m['mean_category_iou']:.4f}" in res.stdout


def test_dataset_formats_are_detected_by_one_rule_each(tmp_path):
    from segsuite.core.domain import DatasetFormat
    from segsuite.core.plugins import load_plugins

    formats = load_plugins(entry_points=False).domain("driving").dataset_formats
    assert set(formats) == {"cityscapes", "camvid"} and all(isinstance(f, DatasetFormat) for f in formats.values())
    assert formats["camvid"].detect is is_camvid and formats["cityscapes"].detect is is_cityscapes
    for split in ("train", "val"):  # training needs train/trainannot, evaluation val/valannot: both are CamVid
        root = tmp_path / split
        (root / split).mkdir(parents=True)
        assert not is_camvid(root)
        (root / f"{split}annot").mkdir()
        assert is_camvid(root) and not is_cityscapes(root)
    (tmp_path / "cs" / "leftImg8bit").mkdir(parents=True)
    assert is_cityscapes(tmp_path / "cs") and not is_camvid(tmp_path / "cs")
