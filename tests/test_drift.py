"""The input drift warning (issue #13, item 3): training records per-channel statistics of its raw
inputs in the model card; every 2D pipeline warns once per input (and flags its JSON record)
when an input lies far outside them, and stays quiet on the data the model was made for."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segsuite.core.checkpoint import ModelCard, read_card, rewrite_card
from segsuite.core.drift import FLAT_RATIO, MARGIN, InputStats, compare, record_input_stats, watch_input

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
DRIFT = "unlike the model's training data"

# sha256 over the shipped models' tensors (sorted names, dtypes, shapes, bytes), computed from the
# files as they were before their cards got input statistics: rewriting the card kept the weights.
# (driving: the DDRNet of issue #17, hashed as `segsuite train` wrote it, before record_input_stats)
WEIGHTS = {
    "satellite": "a8c7597c37022bd62f6c2d534743d9576f37f606eb4f5f39a0874ddb07ce3e01",
    "industrial": "4fa23445511d9968769e6b2865d75fe01a0d695251c4a7f2835b26dcfbef0c9f",
    "driving": "f8e4d3e5670251eae6e7d09473b345ecf0bbfc6966e4d12286fbea3bd8e972a9",
}


def drift_warnings(result) -> list[str]:
    """The drift warning lines of a run, after checking that it succeeded without a traceback."""
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr
    return [ln for ln in result.stderr.splitlines() if ln.startswith("segsuite: warning:") and DRIFT in ln]


def record(path: Path) -> dict:
    return json.loads(path.read_text())


def tensor_hash(path: Path) -> str:
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as fh:
        for name in sorted(fh.keys()):
            t = fh.get_tensor(name).contiguous()
            digest.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -- the rule -------------------------------------------------------------------------------------

STATS = InputStats(p01=(100.0, 0.0), p50=(150.0, 50.0), p99=(200.0, 100.0))  # spans 100 and 100


def pixels(first: np.ndarray) -> np.ndarray:
    """Channel 0 as given, channel 1 spread over its training range."""
    return np.stack([first, np.linspace(0, 100, first.size)])


@pytest.mark.parametrize("values, drifts", [
    (np.linspace(100, 200, 1000), False),                                    # the training range itself
    (np.full(1000, 200 + 0.9 * MARGIN * 100) + np.linspace(-50, 0, 1000), False),  # just inside the margin
    (np.r_[np.full(400, 500.0), np.linspace(100, 200, 600)], False),         # 40 % far out: an unusual scene
    (np.r_[np.full(600, 500.0), np.linspace(100, 200, 400)], True),          # 60 % far out
    (np.r_[np.full(300, 0.0), np.full(300, 400.0), np.linspace(100, 200, 400)], True),  # 60 %, both sides
    (np.linspace(0, 80, 1000), True),                                        # 8-bit data, 16-bit model
    (np.full(1000, 150.0), True),                                            # flat: nothing to see
    (150 + np.linspace(0, 1.1 * FLAT_RATIO * 100, 1000), False),             # narrow but not flat
])
def test_the_rule_in_one_channel(values, drifts):
    found = compare(STATS, pixels(values))
    assert (found is not None) == drifts
    if drifts:
        assert found["channels"] == [1] and "channel(s) 1 " in found["message"]
        json.dumps(found, allow_nan=False)


def test_no_check_without_pixels_or_with_another_channel_count():
    assert compare(STATS, np.zeros((2, 0))) is None
    assert compare(STATS, np.zeros((3, 10))) is None


@pytest.mark.parametrize("stats", [
    None, {}, "text", {"p01": [1.0], "p50": [2.0]}, {"p01": [1.0], "p50": [2.0], "p99": [float("nan")]},
    {"p01": [1.0, 2.0], "p50": [2.0], "p99": [3.0]}, {"p01": [5.0], "p50": [2.0], "p99": [3.0]},
])
def test_unusable_statistics_mean_no_check(stats):
    assert InputStats.from_card(ModelCard(model={}, class_map={}, input_stats=stats)) is None


def test_a_card_written_before_statistics_existed_loads_without_them():
    old = json.loads(read_card(SAMPLE / "industrial" / "model.safetensors").to_json())
    del old["input_stats"]
    card = ModelCard.from_json(json.dumps(old), "old.safetensors")
    assert card.input_stats == {} and InputStats.from_card(card) is None


def test_watch_checks_the_first_prepared_image_and_restores_the_predictor():
    class Predictor:
        spatial_dims = 2
        card = ModelCard(model={}, class_map={}, input_stats={"p01": [0.0], "p50": [5.0], "p99": [10.0]})

        def prepare(self, image):
            return image

    predictor, warned = Predictor(), []
    with watch_input(predictor, "dark.mp4", warned.append) as watch:
        for _ in range(3):  # three frames of one video: one check, one warning
            predictor.prepare(np.full((1, 1, 4, 4), 500.0))
    assert len(warned) == 1 and warned[0].startswith("dark.mp4: ") and watch.fields["input_drift"]["channels"] == [1]
    assert "prepare" not in vars(predictor)


# -- the shipped models -----------------------------------------------------------------------------


@pytest.mark.parametrize("domain", sorted(WEIGHTS))
def test_shipped_models_carry_statistics_and_the_same_weights(domain):
    path = SAMPLE / domain / "model.safetensors"
    card = read_card(path)
    stats = InputStats.from_card(card)
    assert stats is not None and stats.channels == card.model["in_channels"] and stats.samples > 0
    assert tensor_hash(path) == WEIGHTS[domain]


@pytest.mark.parametrize("domain, make", [
    ("satellite", lambda d: __import__("segsuite.plugins.satellite.synthetic", fromlist=["x"]).make_scenes(d, n=12, seed=10)),
    ("industrial", lambda d: __import__("segsuite.plugins.industrial.synthetic", fromlist=["x"]).make_parts(d, n=80, seed=20)),
    ("driving", lambda d: __import__("segsuite.plugins.driving.synthetic", fromlist=["x"]).make_cityscapes(
        d, n_train=60, n_val=12, seed=30)),
])
def test_the_readme_command_regenerates_the_shipped_statistics(domain, make, tmp_path):
    make(tmp_path / "data")  # the training data of sample_data/README.md
    copy = tmp_path / "model.safetensors"
    shutil.copy(SAMPLE / domain / "model.safetensors", copy)
    rewrite_card(copy, ModelCard(**{**read_card(copy).__dict__, "input_stats": {}}))
    stats = record_input_stats(copy, tmp_path / "data")
    assert read_card(copy).input_stats == stats.to_dict() == read_card(SAMPLE / domain / "model.safetensors").input_stats
    assert tensor_hash(copy) == WEIGHTS[domain]


# -- through the real CLI ------------------------------------------------------------------------


def eight_bit_scene(path: Path, scale: float, bands: tuple[int, ...] = (2, 1, 0, 0), dtype=np.uint16) -> Path:
    """The sample scene as an 8-bit RGB product (values 0..255), its R, G, B put where the model
    expects B, G, R, NIR (``bands`` picks from R, G, B)."""
    import rasterio

    from segsuite.plugins.satellite.synthetic import write_scene

    with rasterio.open(SAMPLE / "satellite" / "scene.tif") as src:
        reflectance = src.read().astype(np.float64)
    rgb = np.clip(reflectance[[2, 1, 0]] * scale, 0, 255)
    return write_scene(path, rgb[list(bands)].astype(dtype), nodata=0 if dtype == np.uint16 else None)


def test_satellite_warns_once_per_8bit_scene_and_not_on_its_sample(cli, tmp_path):
    scenes = tmp_path / "scenes"
    shutil.copy(SAMPLE / "satellite" / "scene.tif", scenes.mkdir() or scenes / "scene.tif")
    eight_bit_scene(scenes / "rgb_a.tif", 255 / 3000)
    eight_bit_scene(scenes / "rgb_b.tif", 255 / 2000)
    res = cli("run", "satellite", "--input", scenes, "--output", tmp_path / "out", "--device", "cpu")
    warned = drift_warnings(res)
    assert len(warned) == 2, res.stderr
    for name in ("rgb_a", "rgb_b"):
        assert sum(f"{name}.tif: input unlike" in ln for ln in warned) == 1
        flag = record(tmp_path / "out" / f"{name}_classes.json")["input_drift"]
        assert flag["channels"] and DRIFT in flag["message"]
    assert "input_drift" not in record(tmp_path / "out" / "scene_classes.json")


def test_plain_rgb_geotiff_tiled_with_bands_warns(cli, tmp_path):
    rgb = eight_bit_scene(tmp_path / "rgb.tif", 255 / 3000, bands=(0, 1, 2), dtype=np.uint8)
    res = cli("tile", rgb, "--bands", "3,2,1,1", "--output", tmp_path / "out" / "rgb_classes.tif", "--device", "cpu")
    assert len(drift_warnings(res)) == 1 and "rgb.tif: " in drift_warnings(res)[0]
    assert record(tmp_path / "out" / "rgb_classes.json")["input_drift"]["channels"]


def dark(path: Path, source: Path) -> Path:
    """``source`` with its values divided by 6: an underexposed frame."""
    from segsuite.core.data.images import read_image, write_image

    array = read_image(source).array
    write_image(path, (array // 6).transpose(1, 2, 0).squeeze())
    return path


def test_industrial_samples_pass_quietly_and_a_dark_part_warns(cli, tmp_path):
    parts = tmp_path / "parts"
    shutil.copytree(SAMPLE / "industrial" / "parts" / "images", parts)
    dark(parts / "zz_dark.png", parts / "ng_001.png")
    res = cli("run", "industrial", "--input", parts, "--output", tmp_path / "out", "--device", "cpu")
    warned = drift_warnings(res)
    assert len(warned) == 1 and "zz_dark.png: input unlike" in warned[0], res.stderr
    assert record(tmp_path / "out" / "zz_dark.json")["input_drift"]["channels"] == [1]
    for image in sorted((SAMPLE / "industrial" / "parts" / "images").glob("*.png")):
        assert "input_drift" not in record(tmp_path / "out" / f"{image.stem}.json")


def test_driving_samples_pass_quietly_and_dark_inputs_warn_once(cli, tmp_path):
    import cv2

    inputs = tmp_path / "inputs"
    shutil.copytree(SAMPLE / "driving" / "frames", inputs)
    shutil.copy(SAMPLE / "driving" / "drive.mp4", inputs / "drive.mp4")
    dark(inputs / "dark_leftImg8bit.png", sorted(inputs.glob("*.png"))[0])
    image = cv2.imread(str(inputs / "dark_leftImg8bit.png"))
    writer = cv2.VideoWriter(str(inputs / "night.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, image.shape[1::-1])
    for _ in range(5):
        writer.write(image)
    writer.release()
    res = cli("run", "driving", "--input", inputs, "--output", tmp_path / "out", "--device", "cpu")
    warned = drift_warnings(res)
    assert len(warned) == 2, res.stderr  # the dark frame, and the dark video once for its five frames
    assert any("dark_leftImg8bit.png: input unlike" in ln for ln in warned) and any("night.mp4: input unlike" in ln for ln in warned)
    assert record(tmp_path / "out" / "dark.json")["input_drift"]["channels"]
    assert record(tmp_path / "out" / "night_video.json")["input_drift"]["channels"]
    samples = [*(tmp_path / "out").glob("synthville*.json"), tmp_path / "out" / "drive_video.json"]
    assert len(samples) == 5 and not [p for p in samples if "input_drift" in record(p)]


def test_an_old_card_without_statistics_runs_without_warning(cli, tmp_path):
    old = tmp_path / "old.safetensors"
    card = read_card(SAMPLE / "industrial" / "model.safetensors")
    card.input_stats = {}
    rewrite_card(SAMPLE / "industrial" / "model.safetensors", card, old)
    part = dark(tmp_path / "parts" / "dark.png", SAMPLE / "industrial" / "parts" / "images" / "ng_001.png")
    res = cli("run", "industrial", "--model", old, "--input", part, "--output", tmp_path / "out", "--device", "cpu")
    assert drift_warnings(res) == [] and "input_drift" not in record(tmp_path / "out" / "dark.json")
    res = cli("run", "industrial", "--input", part, "--output", tmp_path / "new", "--device", "cpu")
    assert len(drift_warnings(res)) == 1  # the same part with the shipped card: the check is the card's


def test_training_records_statistics_of_labelled_raw_pixels_and_run_checks_them(cli, tmp_path):
    from segsuite.core.data.images import write_image

    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    labelled = []
    for i in range(4):
        image = np.stack([rng.integers(20, 120, (32, 32)), rng.integers(1000, 3000, (32, 32))]).astype(np.uint16)
        mask = (image[0] > 70).astype(np.uint8)
        image[:, :4] = 60000  # an unlabelled border of extreme values: not training data
        mask[:, :4] = 255
        write_image(data / "images" / f"p{i}.png", np.concatenate([image, image[:1]]).transpose(1, 2, 0))
        write_image(data / "masks" / f"p{i}.png", mask)
        labelled.append(np.concatenate([image, image[:1]])[:, mask != 255])
    res = cli("train", "--data", data, "--classes", "bg,fg", "--model", "segnet", "-O", "widths=[4,8]", "--epochs", "1",
              "--batch-size", "2", "--no-augment", "--device", "cpu", "--output", tmp_path / "run")
    assert res.exit_code == 0, res.output
    stats = read_card(tmp_path / "run" / "last.safetensors").input_stats
    expected = np.percentile(np.concatenate(labelled, axis=1), [1, 50, 99], axis=1)
    assert stats["channels"] == 3 and stats["samples"] == 4 and stats["pixels"] == 4 * 32 * 28
    for key, row in zip(("p01", "p50", "p99"), expected):
        np.testing.assert_allclose(stats[key], row, rtol=1e-4)

    res = cli("run", "--model", tmp_path / "run" / "last.safetensors", "--input", data / "images",
              "--output", tmp_path / "same", "--device", "cpu")
    assert drift_warnings(res) == []
    write_image(tmp_path / "odd" / "x.png", np.full((32, 32, 3), 50000, np.uint16))
    res = cli("run", "--model", tmp_path / "run" / "last.safetensors", "--input", tmp_path / "odd",
              "--output", tmp_path / "odd_out", "--device", "cpu")
    assert len(drift_warnings(res)) == 1
    assert record(tmp_path / "odd_out" / "x.json")["input_drift"]["channels"] == [1, 2, 3]


def test_explain_warns_on_an_input_unlike_the_training_data(cli, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    shutil.copy(SAMPLE / "industrial" / "parts" / "images" / "ng_001.png", parts / "ng_001.png")
    dark(parts / "zz_dark.png", parts / "ng_001.png")
    res = cli("explain", "industrial", "--input", parts, "--class", "scratch", "--output", tmp_path / "out",
              "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    warned = drift_warnings(res)
    assert len(warned) == 1 and "zz_dark.png: input unlike" in warned[0], res.stderr
    assert "input_drift" in record(tmp_path / "out" / "zz_dark_scratch_cam.json")
    assert "input_drift" not in record(tmp_path / "out" / "ng_001_scratch_cam.json")
