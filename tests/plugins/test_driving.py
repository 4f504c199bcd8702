"""Driving plugin: image outputs in Cityscapes conventions, drivable area, objects, video pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.data.images import read_image_array, write_image
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins
from segsuite.plugins.driving.classes import CITYSCAPES
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
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    assert_one_line_error(cli("run", "driving", "--input", tmp_path / "broken.mp4", "--model", city_ckpt,
                              "--output", tmp_path / "o2"), "broken.mp4")
    assert not list((tmp_path / "o2").glob("*.mp4"))


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
    assert not (tmp_path / "v").exists()
