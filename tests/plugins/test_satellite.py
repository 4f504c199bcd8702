"""Satellite plugin: streamed tiling, georeference, seams, nodata, errors, the default model, and the
`segsuite tile` / `segsuite run satellite` front ends on the core job executor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine, from_origin
from torch import nn

from conftest import ROOT, assert_one_line_error
from segsuite.core.errors import SegsuiteError
from segsuite.core.infer import Predictor, SlidingWindow
from segsuite.core.metrics import ConfusionMatrix
from segsuite.core.models.base import SegmentationModel
from segsuite.plugins.satellite.classes import LANDCOVER
from segsuite.plugins.satellite.synthetic import make_scenes, render_scene, write_scene
from segsuite.plugins.satellite.raster import band_statistics
from segsuite.plugins.satellite.tiling import TileOptions, tile_raster

SAMPLE = ROOT / "sample_data" / "satellite"


def conv_predictor(kernel: int = 5, seed: int = 0) -> Predictor:
    """A real spatial model (receptive field > 1 pixel), so blending matters."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(4, 8, kernel, padding=kernel // 2), nn.ReLU(), nn.Conv2d(8, 5, kernel, padding=kernel // 2))
    model = SegmentationModel(net, arch="test", in_channels=4, num_classes=5, spatial_dims=2, stride=1, encoder_prefix=None)
    return Predictor(model, device="cpu", normalization={"kind": "zscore", "mean": [1000.0] * 4, "std": [800.0] * 4},
                     class_map=LANDCOVER)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    root = make_scenes(tmp_path_factory.mktemp("scenes"), n=1, size=(300, 410), seed=3)
    return root / "images" / "scene_000.tif"


def read(path: Path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src


def test_output_lines_up_with_the_input_and_is_a_cog(scene, tmp_path):
    out = tmp_path / "classes.tif"
    summary = tile_raster(scene, conv_predictor(), out, TileOptions(tile=64, overlap=16, chunk=128))
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height) and dst.bounds == src.bounds
        assert dst.count == 1 and dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert dst.colormap(1)[2] == (*LANDCOVER.colors[2], 255)
        assert dst.tags(1)["CLASS_1"] == "water"
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dst.profile["tiled"]
    assert summary["format"] == "COG" and summary["crs"] == "EPSG:32633"
    total = sum(c["pixels"] for c in summary["classes"].values()) + summary["nodata_pixels"]
    assert total == 300 * 410
    water = summary["classes"]["water"]
    assert water["area_m2"] == pytest.approx(water["pixels"] * 100.0)
    assert [p.name for p in tmp_path.iterdir()] == ["classes.tif"]  # no temporaries left


@pytest.mark.parametrize("overlap", [16, 40])  # 40: the rows kept between window rows outnumber those dropped
def test_no_seams_tiled_chunked_equals_one_sliding_window_pass(scene, overlap):
    pred = conv_predictor()
    ours = tile_raster(scene, pred, scene.with_name("seams.tif"), TileOptions(tile=64, overlap=overlap, chunk=100, cog=False))
    with rasterio.open(scene) as src:
        img = src.read().astype(np.float32)
        valid = src.dataset_mask() > 0
    norm = (img - 1000.0) / 800.0
    norm[:, ~valid] = 0.0
    pred.window = SlidingWindow((64, 64), overlap=overlap / 64, batch_size=4)
    whole = pred.predict(torch.from_numpy(norm)[None], normalized=True)[0].numpy()
    whole[~valid] = 255
    tiled = read(scene.with_name("seams.tif"))[0][0]
    # the same windows and weights in another order: equal up to float summation order
    assert (tiled == whole).mean() > 0.9999
    assert ours["windows"] > 20


def test_pixelwise_model_gives_exactly_the_whole_image_result(scene, tmp_path):
    torch.manual_seed(1)
    model = SegmentationModel(nn.Conv2d(4, 5, 1), arch="pix", in_channels=4, num_classes=5, spatial_dims=2, stride=1, encoder_prefix=None)
    pred = Predictor(model, device="cpu", normalization={"kind": "zscore", "mean": [0.0] * 4, "std": [1000.0] * 4}, class_map=LANDCOVER)
    tile_raster(scene, pred, tmp_path / "o.tif", TileOptions(tile=48, overlap=8, chunk=64))
    with rasterio.open(scene) as src:
        img, valid = src.read().astype(np.float32), src.dataset_mask() > 0
    whole = pred.predict(img)[0].numpy()
    whole[~valid] = 255
    np.testing.assert_array_equal(read(tmp_path / "o.tif")[0][0], whole)


def test_nodata_is_honoured_and_empty_windows_skipped(tmp_path):
    image, _ = render_scene(np.random.default_rng(5), (200, 260), nodata_border=False)
    image[:, :, :130] = 0  # left half nodata, declared
    write_scene(tmp_path / "half.tif", image, nodata=0)
    s = tile_raster(tmp_path / "half.tif", conv_predictor(), tmp_path / "o.tif", TileOptions(tile=64, overlap=0, chunk=4096))
    out = read(tmp_path / "o.tif")[0][0]
    assert (out[:, :130] == 255).all() and (out[:, 130:] != 255).all()
    assert s["windows_skipped_nodata"] == 4 * 2  # 4 window rows x the 2 columns fully inside the nodata half
    assert s["nodata_pixels"] == 200 * 130

    # the same pixels without a declared nodata value are data: 0 is never assumed to be nodata
    write_scene(tmp_path / "nonodata.tif", image, nodata=None)
    s = tile_raster(tmp_path / "nonodata.tif", conv_predictor(), tmp_path / "o2.tif", TileOptions(tile=64, overlap=0))
    assert s["nodata_pixels"] == 0 and (read(tmp_path / "o2.tif")[0][0] != 255).all()
    # ... unless the user says so
    s = tile_raster(tmp_path / "nonodata.tif", conv_predictor(), tmp_path / "o3.tif", TileOptions(tile=64, overlap=0, nodata=0))
    assert s["nodata_pixels"] == 200 * 130


def test_alpha_band_is_a_mask_not_an_input(tmp_path):
    image, _ = render_scene(np.random.default_rng(6), (64, 80), nodata_border=False)
    alpha = np.full((1, 64, 80), 65535, np.uint16)
    alpha[0, :, :20] = 0
    path = tmp_path / "alpha.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=64, count=5, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(0, 0, 10, 10), photometric="RGB", alpha="YES") as dst:
        dst.write(np.concatenate([image[[2, 1, 0]], alpha, image[3:4]]))  # GDAL: first extra sample is alpha
    with rasterio.open(path) as src:
        alpha_band = [i + 1 for i, c in enumerate(src.colorinterp) if c.name == "alpha"]
    s = tile_raster(path, conv_predictor(), tmp_path / "o.tif", TileOptions(tile=32, overlap=8))
    assert alpha_band and alpha_band[0] not in s["bands"] and len(s["bands"]) == 4
    out = read(tmp_path / "o.tif")[0][0]
    assert (out[:, :20] == 255).all() and (out[:, 20:] != 255).all()


def test_rotated_and_ungeoreferenced_rasters(tmp_path):
    image, _ = render_scene(np.random.default_rng(7), (64, 64), nodata_border=False)
    rotated = Affine(8.0, 3.0, 1000.0, 3.0, -8.0, 5000.0)
    with rasterio.open(tmp_path / "rot.tif", "w", driver="GTiff", width=64, height=64, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=rotated) as dst:
        dst.write(image)
    tile_raster(tmp_path / "rot.tif", conv_predictor(), tmp_path / "rot_out.tif", TileOptions(tile=32, overlap=8))
    with rasterio.open(tmp_path / "rot_out.tif") as dst:
        assert dst.transform == rotated
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", width=64, height=64, count=4, dtype="uint16") as dst:
        dst.write(image)
    warnings = []
    s = tile_raster(tmp_path / "plain.tif", conv_predictor(), tmp_path / "plain_out.tif", TileOptions(tile=32, overlap=8),
                    warn=warnings.append)
    assert len(warnings) == 1 and "not georeferenced" in warnings[0]
    assert s["crs"] is None and s["map_units"] == "pixel"


def test_probabilities_output(scene, tmp_path):
    s = tile_raster(scene, conv_predictor(), tmp_path / "c.tif", TileOptions(tile=64, overlap=16, probabilities=True))
    probs = read(Path(s["probabilities"]))[0].astype(np.float64)
    labels = read(tmp_path / "c.tif")[0][0]
    assert probs.shape == (5, 300, 410)
    ok = labels != 255
    assert (probs[:, ~ok] == 0).all()
    total = (probs[:, ok] - 1).sum(0) / 254
    assert np.abs(total - 1).max() < 0.02  # each pixel's probabilities sum to one
    # the label is the most probable class, up to the 1/254 quantisation of the stored values
    p_label = np.take_along_axis(probs[:, ok], labels[ok][None].astype(np.int64), 0)[0]
    assert (p_label >= probs[:, ok].max(0) - 1).all()


def test_stats_exclude_nodata(scene):
    st = band_statistics(scene)
    with rasterio.open(scene) as src:
        img, valid = src.read().astype(np.float64), src.dataset_mask() > 0
    np.testing.assert_allclose(st["mean"], img[:, valid].mean(1), rtol=1e-9)
    np.testing.assert_allclose(st["std"], img[:, valid].std(1), rtol=1e-6)
    assert st["valid_pixels"] == valid.sum() and st["min"][0] == img[0, valid].min()


def test_tile_cli_default_model_on_the_sample_scene(tmp_path, segsuite_proc):
    shutil.copy(SAMPLE / "scene.tif", tmp_path / "scene.tif")
    res = segsuite_proc("tile", tmp_path / "scene.tif")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "scene_classes.tif"
    summary = json.loads((tmp_path / "scene_classes.json").read_text())
    assert summary["output"] == str(out) and summary["format"] == "COG"
    with rasterio.open(SAMPLE / "scene_labels.tif") as src:
        truth = src.read(1)
    with rasterio.open(out) as dst:
        pred = dst.read(1)
    np.testing.assert_array_equal(pred == 255, truth == 255)  # the nodata border, exactly


@pytest.mark.slow
def test_default_model_on_fresh_held_out_scenes(tmp_path, cli):
    root = make_scenes(tmp_path / "fresh", n=3, size=(320, 384), seed=2026)  # seeds the model never saw
    res = cli("tile", root / "images", "--output", tmp_path / "out", "--tile", "256", "--overlap", "32", "--device", "cpu")
    assert res.exit_code == 0, res.output
    cm = ConfusionMatrix(5, 255, class_names=list(LANDCOVER.names))
    for mask in sorted((root / "masks").glob("*.tif")):
        truth = read(mask)[0][0].astype(np.int64)
        pred = read(tmp_path / "out" / f"{mask.stem}_classes.tif")[0][0].astype(np.int64)
        cm.update(torch.from_numpy(np.where(pred == 255, 0, pred))[None], torch.from_numpy(truth)[None])
    metrics = cm.compute()
    assert metrics.mean_iou >= 0.85, metrics.table()


def test_train_on_geotiff_pairs_and_misalignment_errors(tmp_path, cli):
    root = make_scenes(tmp_path / "d", n=2, size=(96, 96), seed=1)
    res = cli("train", "satellite", "--data", root, "--val", root, "--epochs", "1", "--batch-size", "2",
              "--patch-size", "64,64", "--device", "cpu", "--output", tmp_path / "run")
    assert res.exit_code == 0, res.output
    from segsuite.core.checkpoint import read_card

    card = read_card(tmp_path / "run" / "best.safetensors")
    assert card.domain == "satellite" and card.model["in_channels"] == 4 and len(card.normalization["mean"]) == 4
    res = cli("evaluate", "--model", tmp_path / "run" / "best.safetensors", "--data", root, "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    # the satellite pipeline evaluates: each scene tiled as `segsuite tile` does, scored whole
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert [r["image"] for r in metrics["per_image"]] == ["scene_000.tif", "scene_001.tif"]
    assert (tmp_path / "ev" / "predictions" / "scene_000_classes.tif").exists()

    mask = root / "masks" / "scene_001.tif"
    labels = read(mask)[0]
    write_scene(mask, labels, origin=(500005.0, 4100000.0), nodata=255)  # shifted by half a pixel
    assert_one_line_error(cli("train", "satellite", "--data", root, "--epochs", "1", "--output", tmp_path / "r2"),
                          "scene_001.tif: mask transform", "differs from its image's")
    write_scene(mask, labels, crs="EPSG:32634", nodata=255)
    assert_one_line_error(cli("train", "satellite", "--data", root, "--epochs", "1", "--output", tmp_path / "r2"),
                          "mask CRS EPSG:32634 differs")
    write_scene(mask, labels[:, :90], nodata=255)
    assert_one_line_error(cli("train", "satellite", "--data", root, "--epochs", "1", "--output", tmp_path / "r2"),
                          "mask is 96x90 pixels")


def test_bad_inputs_are_one_line_errors_and_leave_nothing(tmp_path, cli, scene):
    ckpt = SAMPLE / "model.safetensors"
    (tmp_path / "notraster.tif").write_text("hello")
    assert_one_line_error(cli("tile", tmp_path / "notraster.tif", "--model", ckpt), "notraster.tif: not a readable raster")

    data = scene.read_bytes()
    (tmp_path / "truncated.tif").write_bytes(data[: len(data) // 2])
    res = cli("tile", tmp_path / "truncated.tif", "--model", ckpt, "--output", tmp_path / "t_out.tif")
    assert_one_line_error(res, "truncated.tif")
    assert not (tmp_path / "t_out.tif").exists()

    image = np.zeros((4, 64, 64), np.uint16)
    write_scene(tmp_path / "empty.tif", image, nodata=0)
    assert_one_line_error(cli("tile", tmp_path / "empty.tif", "--model", ckpt, "--output", tmp_path / "e.tif"),
                          "empty.tif: every pixel is nodata")
    assert not (tmp_path / "e.tif").exists()

    write_scene(tmp_path / "rgb.tif", np.ones((3, 32, 32), np.uint16), nodata=None)
    assert_one_line_error(cli("tile", tmp_path / "rgb.tif", "--model", ckpt),
                          "the model expects 4 band(s)", "3 are selected", "--bands")
    assert_one_line_error(cli("tile", scene, "--model", ckpt, "--bands", "1,2,3,9"), "band(s) 9 do not exist; the raster has bands 1..4")
    assert_one_line_error(cli("tile", scene, "--model", ckpt, "--output", "/etc/passwd/x.tif"), "/etc/passwd")
    assert_one_line_error(cli("tile", scene, "--model", ckpt, "--overlap", "600"), "--overlap 600 must be")
    assert not list(tmp_path.glob(".*partial*"))


def test_vector_polygons_are_not_cut_at_strip_edges(tmp_path):
    from segsuite.plugins.satellite.vector import polygonize

    labels = np.zeros((1, 100, 120), np.uint8)
    labels[0, 10:90, 20:60] = 1  # one tall rectangle crossing every strip boundary
    labels[0, 40:45, 80:85] = 2  # a 5x5 speck
    labels[0, 95:, :] = 255  # nodata rows
    write_scene(tmp_path / "cls.tif", labels, nodata=255)
    res = polygonize(tmp_path / "cls.tif", tmp_path / "cls.geojson", LANDCOVER, strip_rows=16)
    doc = json.loads((tmp_path / "cls.geojson").read_text())
    water = [f for f in doc["features"] if f["properties"]["class"] == "water"]
    assert len(water) == 1  # merged across the 6 strip edges it crosses
    assert water[0]["properties"]["area"] == pytest.approx(80 * 40 * 100.0)
    assert water[0]["properties"]["area_m2"] == pytest.approx(80 * 40 * 100.0)
    assert "crs" not in doc  # RFC 7946: WGS84 longitude/latitude, reprojected from the raster's UTM metres
    lon, lat = water[0]["geometry"]["coordinates"][0][0]
    assert 14 < lon < 16 and 30 < lat < 45
    assert res["per_class"] == {"background": 1, "water": 1, "vegetation": 1}
    # the background ring around them is one polygon too, and nodata is not a class
    res = polygonize(tmp_path / "cls.tif", tmp_path / "cls.gpkg", LANDCOVER, strip_rows=16, min_area=5000)
    import pyogrio

    meta = pyogrio.read_info(tmp_path / "cls.gpkg")
    assert meta["features"] == 2 and "area_m2" in list(meta["fields"])  # the 2500 m² speck is dropped
    assert "32633" in meta["crs"]


def test_tile_cli_vector_option(scene, tmp_path, cli):
    res = cli("tile", scene, "--model", SAMPLE / "model.safetensors", "--output", tmp_path / "c.tif",
              "--vector", tmp_path / "c.gpkg", "--min-area", "500", "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["vector"]["polygons"] > 0 and (tmp_path / "c.gpkg").exists()
    assert_one_line_error(cli("tile", scene, "--vector", tmp_path / "c.shp"), "must end in .gpkg or .geojson")


def test_run_satellite_uses_the_tiler(tmp_path, cli):
    shutil.copy(SAMPLE / "scene.tif", tmp_path / "scene.tif")
    res = cli("run", "satellite", "--input", tmp_path / "scene.tif", "--output", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "out" / "scene_classes.tif") as dst, rasterio.open(SAMPLE / "scene.tif") as src:
        assert dst.transform == src.transform and dst.crs == src.crs


@pytest.mark.parametrize("method", ["entropy", "tta"])
def test_uncertainty_raster_lines_up_and_equals_one_sliding_window_pass(scene, tmp_path, method):
    pred = conv_predictor()
    out = tmp_path / "c.tif"
    summary = tile_raster(scene, pred, out, TileOptions(tile=64, overlap=16, chunk=128, uncertainty=method, cog=False))
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "c_uncertainty.tif") as unc, rasterio.open(out) as cls:
        assert unc.crs == src.crs and unc.transform == src.transform and (unc.width, unc.height) == (src.width, src.height)
        assert unc.count == 1 and unc.dtypes[0] == "float32" and unc.nodata == -1
        assert unc.tags(1)["UNCERTAINTY"] == method
        umap, labels = unc.read(1), cls.read(1)
        img, valid = src.read().astype(np.float32), src.dataset_mask() > 0
    assert ((umap == -1) == (labels == 255)).all() and (umap == -1).any()  # nodata where the class raster has it
    ok = umap != -1
    assert 0 <= umap[ok].min() and umap[ok].max() <= 1 and umap[ok].max() > 0
    norm = (img - 1000.0) / 800.0
    norm[:, ~valid] = 0.0
    pred.window = SlidingWindow((64, 64), overlap=0.25, batch_size=4)
    probs, whole = pred.probabilities_and_uncertainty(torch.from_numpy(norm)[None], method, normalized=True)
    # the same windows and weights, streamed in chunks and rows: equal up to float summation order
    np.testing.assert_allclose(umap[ok], whole[0].numpy()[ok], atol=1e-4)
    assert (labels[ok] == probs[0].argmax(0).numpy()[ok]).mean() > 0.9999
    assert summary["uncertainty"]["method"] == method
    assert summary["uncertainty"]["mean"] == pytest.approx(float(umap[ok].mean()), abs=1e-4)


def test_tile_and_run_satellite_uncertainty_options(scene, tmp_path, cli):
    ckpt = SAMPLE / "model.safetensors"
    res = cli("tile", scene, "--model", ckpt, "--output", tmp_path / "t.tif", "--uncertainty", "entropy", "--device", "cpu")
    assert res.exit_code == 0, res.output
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "t_uncertainty.tif") as unc:
        assert unc.crs == src.crs and unc.transform == src.transform
    assert json.loads((tmp_path / "t.json").read_text())["uncertainty"]["output"] == str(tmp_path / "t_uncertainty.tif")
    # the shipped model has no dropout: a clear error before anything is written
    res = cli("tile", scene, "--model", ckpt, "--output", tmp_path / "m.tif", "--uncertainty", "mcdropout")
    assert_one_line_error(res, "MC dropout needs a model with dropout layers")
    assert not (tmp_path / "m.tif").exists() and not list(tmp_path.glob(".*partial*"))
    assert_one_line_error(cli("tile", scene, "--uncertainty", "spread"), "choose one of entropy, tta, mcdropout")
    shutil.copy(scene, tmp_path / "s.tif")
    res = cli("run", "satellite", "--input", tmp_path / "s.tif", "--output", tmp_path / "run", "--uncertainty", "entropy",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "run" / "s_classes_uncertainty.tif") as unc, rasterio.open(scene) as src:
        assert unc.transform == src.transform and unc.crs == src.crs


# -- `segsuite tile` and `segsuite run satellite` on the core job executor -----------------

MODEL = SAMPLE / "model.safetensors"
FAST = ("--model", MODEL, "--tile", "64", "--overlap", "16", "--device", "cpu")


@pytest.fixture(scope="module")
def small_scenes(tmp_path_factory) -> list[Path]:
    """Two small labelled scenes (images only are used as inputs)."""
    root = make_scenes(tmp_path_factory.mktemp("small"), n=2, size=(96, 128), seed=11)
    return sorted((root / "images").glob("*.tif"))


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_tile_folder_goes_on_past_bad_scenes_first_and_last(tmp_path, cli, scene, small_scenes):
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "a_unreadable.tif").write_text("not a raster")  # sorts first
    for src in small_scenes:
        shutil.copy(src, folder / src.name)
    data = scene.read_bytes()
    (folder / "z_truncated.tif").write_bytes(data[: len(data) // 2])  # sorts last
    res = cli("tile", folder, *FAST)
    assert res.exit_code == 2, res.output
    for src in small_scenes:
        assert (folder / f"{src.stem}_classes.tif").exists() and (folder / f"{src.stem}_classes.json").exists()
    summary = summary_of(folder)
    assert summary["counts"] == {"ok": 2, "failed": 2, "skipped": 0, "not run": 0}
    status = {Path(e["input"]).name: e["status"] for e in summary["inputs"]}
    assert status == {"a_unreadable.tif": "failed", "scene_000.tif": "ok", "scene_001.tif": "ok", "z_truncated.tif": "failed"}
    errors = [e["error"] for e in summary["inputs"] if e["status"] == "failed"]
    assert "a_unreadable.tif: not a readable raster" in errors[0] and "truncated" in errors[1]
    assert all("\n" not in e for e in errors)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 3 and "Traceback" not in res.stderr  # one line per failed scene, then the count
    assert "a_unreadable.tif" in lines[0] and "z_truncated.tif" in lines[1] and "2 of 4 failed" in lines[2]
    assert not (folder / "a_unreadable_classes.tif").exists() and not (folder / "z_truncated_classes.tif").exists()
    assert not list(folder.glob(".*partial*"))
    assert res.stdout.count(" -> ") == 2  # the per-scene lines of the good scenes


def test_same_stem_scenes_get_distinct_outputs(tmp_path, cli, small_scenes):
    shutil.copy(small_scenes[0], tmp_path / "x.tif")
    shutil.copy(small_scenes[1], tmp_path / "x.tiff")
    res = cli("tile", tmp_path, *FAST)
    assert res.exit_code == 0, res.output
    summary = summary_of(tmp_path)
    outputs = {Path(e["input"]).name: Path(e["outputs"]["classes"]).name for e in summary["inputs"]}
    assert outputs == {"x.tif": "x_classes.tif", "x.tiff": "x.tiff_classes.tif"}
    with rasterio.open(tmp_path / "x_classes.tif") as a, rasterio.open(tmp_path / "x.tiff_classes.tif") as b:
        assert not np.array_equal(a.read(1), b.read(1))  # two scenes, two results: nothing overwritten
    assert json.loads((tmp_path / "x.tiff_classes.json").read_text())["input"] == str(tmp_path / "x.tiff")


def test_rerun_into_the_same_folder_does_not_take_its_own_outputs(tmp_path, cli, small_scenes):
    for src in small_scenes:
        shutil.copy(src, tmp_path / src.name)
    for _ in range(2):
        res = cli("tile", tmp_path, *FAST, "--probabilities", "--uncertainty", "entropy")
        assert res.exit_code == 0, res.output
        assert [Path(e["input"]).name for e in summary_of(tmp_path)["inputs"]] == ["scene_000.tif", "scene_001.tif"]
    assert (tmp_path / "scene_000_classes_probabilities.tif").exists()
    assert (tmp_path / "scene_000_classes_uncertainty.tif").exists()
    assert not list(tmp_path.glob("*_classes_classes*"))
    # --skip-existing: nothing left to do, nothing rewritten
    before = (tmp_path / "scene_000_classes.tif").stat().st_mtime_ns
    res = cli("tile", tmp_path, *FAST, "--probabilities", "--uncertainty", "entropy", "--skip-existing")
    assert res.exit_code == 0, res.output
    assert summary_of(tmp_path)["counts"]["skipped"] == 2 and "skipped 2" in res.stdout
    assert (tmp_path / "scene_000_classes.tif").stat().st_mtime_ns == before


def test_tile_refuses_to_overwrite_its_input(tmp_path, cli, small_scenes):
    target = tmp_path / "s.tif"
    shutil.copy(small_scenes[0], target)
    data = target.read_bytes()
    assert_one_line_error(cli("tile", target, "--output", target, *FAST), "s.tif", "would overwrite the input")
    assert target.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_run_satellite_help_lists_the_tiling_options(cli):
    res = cli("run", "satellite", "--help")
    assert res.exit_code == 0, res.output
    for flag in ("--tile", "--overlap", "--batch", "--bands", "--nodata", "--probabilities", "--cog",
                 "--uncertainty", "--vector", "--min-area", "--simplify", "--skip-existing"):
        assert flag in res.stdout, flag


def test_run_satellite_and_tile_write_the_same_outputs(tmp_path, cli, small_scenes):
    src = small_scenes[0]
    opts = ("--tile", "64", "--overlap", "16", "--bands", "1,2,3,4", "--probabilities", "--no-cog", "--device", "cpu",
            "--model", MODEL)
    assert cli("tile", src, "--output", tmp_path / "t", *opts).exit_code == 0
    res = cli("run", "satellite", "--input", src, "--output", tmp_path / "r", *opts)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "t").iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in (tmp_path / "r").iterdir() if not p.name.startswith("."))
    assert "scene_000_classes_probabilities.tif" in names
    for name in ("scene_000_classes.tif", "scene_000_classes_probabilities.tif"):
        with rasterio.open(tmp_path / "t" / name) as a, rasterio.open(tmp_path / "r" / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.profile == b.profile
    t, r = (json.loads((tmp_path / d / "scene_000_classes.json").read_text()) for d in ("t", "r"))
    assert t["format"] == r["format"] == "GTiff" and t["classes"] == r["classes"] and t["bands"] == [1, 2, 3, 4]
    assert_one_line_error(cli("run", "satellite", "--input", src, "--bands", "0,1"), "--bands '0,1' must be 1-based")
    assert_one_line_error(cli("run", "satellite", "--input", src, "--tile", "8"), "--tile 8: must be between 16 and 8192")


def test_vector_needs_one_scene(tmp_path, cli, small_scenes):
    assert_one_line_error(cli("tile", small_scenes[0].parent, "--vector", tmp_path / "v.gpkg", *FAST),
                          "polygonise one scene at a time")
    res = cli("run", "satellite", "--input", small_scenes[0].parent, "--vector", tmp_path / "v.gpkg", "--output",
              tmp_path / "out", "--model", MODEL)
    assert_one_line_error(res, "would both write", "v.gpkg")
    assert not (tmp_path / "v.gpkg").exists()


def test_evaluate_scores_what_tile_writes(tmp_path, cli):
    """The demo's evaluation: the sample scene tiled with the sample's windows, scored against its labels,
    equals scoring the class raster `segsuite tile` writes with those windows."""
    from segsuite.plugins.satellite.pipeline import SAMPLE_WINDOWS, TilingPipeline

    pipeline = TilingPipeline()
    result = pipeline.evaluate(MODEL, SAMPLE / "scene.tif", tmp_path / "ev", device="cpu")
    shutil.copy(SAMPLE / "scene.tif", tmp_path / "scene.tif")
    res = cli("tile", tmp_path / "scene.tif", "--tile", SAMPLE_WINDOWS["tile"], "--overlap", SAMPLE_WINDOWS["overlap"],
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    pred, truth = read(tmp_path / "scene_classes.tif")[0][0].astype(np.int64), read(SAMPLE / "scene_labels.tif")[0][0]
    cm = ConfusionMatrix(5, 255, class_names=list(LANDCOVER.names))
    cm.update(torch.from_numpy(np.where(pred == 255, 0, pred))[None], torch.from_numpy(truth.astype(np.int64))[None])
    expected = cm.compute()
    assert result["confusion_matrix"] == expected.confusion.tolist()
    assert result["mean_iou"] == pytest.approx(expected.mean_iou) and result["mean_iou"] > 0.8
    assert [r["image"] for r in result["per_image"]] == ["scene.tif"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["mean_iou"] == result["mean_iou"]
    assert (tmp_path / "ev" / "confusion.png").exists() and (tmp_path / "ev" / "per_image.csv").exists()
    text = pipeline.describe_evaluation(result)
    assert "mean IoU" in text and "scene.tif" in text
    # the sample folder itself is a layout too (SCENE.tif + SCENE_labels.tif); the model file is not a scene
    again = pipeline.evaluate(MODEL, SAMPLE, None, device="cpu")
    assert again["confusion_matrix"] == result["confusion_matrix"] and again["per_image"][0]["prediction"] is None


def test_evaluate_refuses_unaligned_or_missing_labels(tmp_path, small_scenes):
    from segsuite.plugins.satellite.evaluate import labelled_scenes

    shutil.copy(small_scenes[0], tmp_path / "a.tif")
    with pytest.raises(Exception, match="a.tif: no labels a_labels.tif"):
        labelled_scenes(tmp_path)
    labels = read(small_scenes[0].parent.parent / "masks" / small_scenes[0].name)[0]
    write_scene(tmp_path / "a_labels.tif", labels, origin=(500005.0, 4100000.0), nodata=255)
    with pytest.raises(Exception, match="mask transform .* differs"):
        labelled_scenes(tmp_path)
    write_scene(tmp_path / "a_labels.tif", labels, nodata=255)
    assert labelled_scenes(tmp_path) == [(tmp_path / "a.tif", tmp_path / "a_labels.tif")]


def test_sample_report_section_and_evaluation_content(tmp_path):
    """What the generic demo assembles from the satellite pipeline: the tiling pictures and tables,
    then the reference labels, the metrics and the mean IoU (the content of the old satellite demo)."""
    from segsuite.core.jobs import Job, JobConsole, run_job
    from segsuite.core.pipeline import check_options
    from segsuite.plugins.satellite.plugin import SAMPLE as SAT_SAMPLE, segsuite_domains

    domain = segsuite_domains()[0]
    pipeline = domain.pipeline
    assert domain.dataset_formats["geotiff"].detect(make_scenes(tmp_path / "pairs", n=1, size=(64, 64)))
    job = Job(pipeline=pipeline, inputs=[SAMPLE / i for i in SAT_SAMPLE.inputs], checkpoint=MODEL,
              output=tmp_path / "run", options=check_options(pipeline.options, SAT_SAMPLE.options), device="cpu")
    result = run_job(job, console=JobConsole(quiet=True))
    assert result.exit_code == 0
    section = pipeline.report_section(result.records, LANDCOVER, tmp_path)
    evaluation = pipeline.evaluate(MODEL, SAMPLE / SAT_SAMPLE.labels, tmp_path / "evaluation", device="cpu")
    pipeline.add_evaluation(section, evaluation, tmp_path / "evaluation")
    assert [c.split(":")[0].split(" (")[0] for c, _ in section.images] == [
        "scene.tif", "scene_classes.tif", "scene_classes.tif", "scene_labels.tif"]
    assert all(Path(p).is_file() for _, p in section.images)
    assert [k for k, _ in section.facts] == ["scenes", "windows", "classified area", "mean IoU"]
    assert section.evaluation is not None and section.evaluation.confusion.is_file()
    assert section.tables[0].title.startswith("scene.tif: land-cover areas")
    assert "--tile 256 --overlap 32" in SAT_SAMPLE.note



@pytest.mark.parametrize("layout", [{"tiled": True, "blockxsize": 32, "blockysize": 48}, {"tiled": False, "blockysize": 5}])
def test_window_rows_from_block_strips_equal_direct_reads(tmp_path, layout):
    """The tiler reads strips of whole blocks once and cuts window rows from them; that must
    give what reading each window row directly gives, nodata included."""
    from segsuite.plugins.satellite.tiling import RowReader, SceneGrid, cut_windows

    rng = np.random.default_rng(0)
    data = rng.integers(0, 3000, (4, 203, 170)).astype(np.uint16)
    data[:, 50:60, 20:90] = 0
    path = tmp_path / "strips.tif"
    with rasterio.open(path, "w", driver="GTiff", width=170, height=203, count=4, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=from_origin(0, 0, 10, 10), **layout) as dst:
        dst.write(data)
    pred = conv_predictor()
    with rasterio.open(path) as src:
        grid = SceneGrid.open(src, path, pred, TileOptions(tile=64, overlap=24), lambda m: None)
        reader = RowReader(grid, 10, 150)
        assert reader.strip % src.block_shapes[0][0] == 0 and reader.strip >= 128
        for y in grid.ys:
            pieces, valid = reader.row(y)
            direct, direct_valid = grid.read_rows(y, 64, 10, 150)
            np.testing.assert_array_equal(valid, direct_valid)
            xs = [0, 37, 140 - 64]
            np.testing.assert_array_equal(cut_windows(pieces, xs, 64), np.stack([direct[:, :, x : x + 64] for x in xs]))
        assert (~valid).sum() == 0 and (~grid.read_rows(50, 10, 10, 150)[1]).sum() == 10 * 70


def test_busy_seconds_is_the_union_of_the_streams_intervals():
    from segsuite.plugins.satellite.tiling import busy_seconds

    assert busy_seconds([]) == 0
    assert busy_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]) == pytest.approx(4.0)


def test_a_failing_model_stops_the_row_reader_before_the_scene_is_closed(scene, tmp_path, monkeypatch):
    """An error from the network ends the run with no reader thread left over to read the
    scene after it is closed (its generator must be closed as the error passes)."""
    import gc
    import threading
    import time

    from segsuite.plugins.satellite import tiling

    pred = conv_predictor()
    real_logits, calls = pred.window_logits, []

    reading = threading.Event()

    def failing(batch):
        calls.append(1)
        if len(calls) > 2 and reading.is_set():  # fail while the reader is busy with the next strip
            raise RuntimeError("the network broke")
        return real_logits(batch)

    pred.window_logits = failing
    real_read, closed_reads = tiling.SceneGrid.read_rows, []

    def slow_read(self, *args):
        reading.set()
        time.sleep(0.3)
        closed_reads.append(self.src.closed)
        try:
            return real_read(self, *args)
        finally:
            reading.clear()

    monkeypatch.setattr(tiling.SceneGrid, "read_rows", slow_read)
    gc.disable()  # only the generator's own closing counts, not a collection that happens to run
    try:
        before = threading.active_count()
        with pytest.raises(RuntimeError, match="the network broke"):
            tile_raster(scene, pred, tmp_path / "c.tif", TileOptions(tile=32, overlap=8, chunk=500, cog=False))
        assert threading.active_count() == before
        time.sleep(0.5)
        assert closed_reads and not any(closed_reads)
    finally:
        gc.enable()
    assert not (tmp_path / "c.tif").exists()


def test_a_model_that_returns_nan_stops_the_scene_and_leaves_nothing(scene, tmp_path):
    class NaNAfterConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 5, 1)

        def forward(self, x):
            y = self.conv(x)
            return y.masked_fill(y > 0.5, float("nan"))

    model = SegmentationModel(NaNAfterConv(), arch="nan", in_channels=4, num_classes=5, spatial_dims=2, stride=1,
                              encoder_prefix=None)
    pred = Predictor(model, device="cpu", normalization={"kind": "zscore", "mean": [1000.0] * 4, "std": [800.0] * 4},
                     class_map=LANDCOVER)
    out = tmp_path / "nan.tif"
    with pytest.raises(SegsuiteError, match="non-finite"):
        tile_raster(scene, pred, out, TileOptions(tile=64, overlap=16))
    assert list(tmp_path.iterdir()) == []


def test_a_scene_stored_as_one_strip_is_read_a_window_row_at_a_time(tmp_path):
    from segsuite.plugins.satellite.tiling import MAX_STRIP, SceneGrid

    path = tmp_path / "one_strip.tif"
    height = MAX_STRIP + 100
    with rasterio.open(path, "w", driver="GTiff", width=40, height=height, count=4, dtype="uint16",
                       blockysize=height, compress="deflate") as dst:
        dst.write(np.random.default_rng(0).integers(0, 3000, (4, height, 40)).astype(np.uint16))
    with rasterio.open(path) as src:
        assert src.block_shapes[0][0] == height
        grid = SceneGrid.open(src, path, conv_predictor(), TileOptions(tile=64, overlap=16), lambda m: None)
        assert grid.strip_rows() == 64  # not the whole height
