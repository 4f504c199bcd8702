"""Bad command lines and the inputs around them (issue #13, part C), through the real CLI.

Numeric options and device strings are refused with one line before anything is read or
written; unknown options are one line pointing at --help; satellite outputs keep their formats
(GeoJSON in WGS84, band hints that name existing bands); C libraries do not print beside us.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.data.images import write_image

SATELLITE_MODEL = ROOT / "sample_data" / "satellite" / "model.safetensors"
INDUSTRIAL_MODEL = ROOT / "sample_data" / "industrial" / "model.safetensors"


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    """A small industrial dataset: images/ and masks/."""
    from segsuite.plugins.industrial.synthetic import make_parts

    return make_parts(tmp_path_factory.mktemp("parts"), n=6, size=(64, 64), seed=1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from segsuite.plugins.satellite.synthetic import make_scenes

    return make_scenes(tmp_path_factory.mktemp("scenes"), n=1, size=(96, 96), seed=2) / "images" / "scene_000.tif"


def assert_nothing_at(path: Path) -> None:
    assert not path.exists(), f"{path} was created: {sorted(p.name for p in path.rglob('*'))}"


# -- 1. numeric options and devices, before anything is created -------------------------------

TRAIN_CASES = {
    "epochs 0": (["--epochs", "0"], "--epochs 0: must be at least 1"),
    "epochs negative": (["--epochs", "-2"], "--epochs -2: must be at least 1"),
    "lr negative": (["--lr", "-1"], "--lr -1: must be greater than 0"),
    "lr zero": (["--lr", "0"], "must be greater than 0"),
    "lr nan": (["--lr", "nan"], "--lr nan: must be a number"),
    "batch size 0": (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    "patch 0,0": (["--patch-size", "0,0"], "--patch-size 0,0: every side must be at least 1"),
    "patch one number": (["--patch-size", "64"], "give 2 (H,W) or 3 (D,H,W) whole numbers"),
    "patch letters": (["--patch-size", "a,b"], "--patch-size 'a,b': give 2 (H,W) or 3 (D,H,W) whole numbers"),
    "patch 3D for 2D data": (["--patch-size", "32,32,32"], "2D images need 2 sides (H,W)"),
    "patch below the model's stride": (["--patch-size", "4,4"], "give at least 8 pixels per side"),
    "workers negative": (["--workers", "-1"], "--workers -1: must be at least 0"),
    "device tpu": (["--device", "tpu"], "--device tpu: not a device"),
    "device cuda:abc": (["--device", "cuda:abc"], "--device cuda:abc: the GPU index must be a whole number"),
}


@pytest.mark.parametrize("case", TRAIN_CASES, ids=list(TRAIN_CASES))
def test_train_refuses_bad_numbers_before_making_the_run_folder(case, parts, tmp_path, cli):
    args, fragment = TRAIN_CASES[case]
    out = tmp_path / "run"
    # --batch-size 2 first, so that without the check these would train (6 parts fill a batch of 2);
    # a case's own --batch-size comes later and wins
    assert_one_line_error(cli("train", "industrial", "--data", parts, "--output", out, "--batch-size", "2", *args),
                          fragment)
    assert_nothing_at(out)


@pytest.mark.parametrize("setting, fragment", [("epochs: 0", "--epochs 0"), ("lr: abc", "--lr 'abc': must be a number"),
                                               ("patch_size: abc", "--patch-size abc"), ("amp: fp8", "--amp 'fp8'")])
def test_train_checks_a_config_file_the_same_way(setting, fragment, parts, tmp_path, cli):
    config = tmp_path / "c.yaml"
    config.write_text(setting + "\n")
    out = tmp_path / "run"
    assert_one_line_error(cli("train", "industrial", "--data", parts, "--config", config, "--output", out), fragment)
    assert_nothing_at(out)


def device_commands(parts: Path, scene: Path, out: Path) -> dict[str, list]:
    """Every command that takes --device, with inputs that exist (so only the device is wrong)."""
    return {
        "train": ["train", "industrial", "--data", parts, "--epochs", "1", "--output", out],
        "evaluate": ["evaluate", "industrial", "--model", INDUSTRIAL_MODEL, "--data", parts, "--output", out],
        "run": ["run", "industrial", "--input", parts / "images", "--model", INDUSTRIAL_MODEL, "--output", out],
        "tile": ["tile", scene, "--model", SATELLITE_MODEL, "--output", out / "c.tif"],
        "explain": ["explain", "satellite", "--input", scene, "--class", "water", "--output", out],
        "bench": ["bench", "--size", "32x32", "--runs", "1", "--warmup", "0"],
        "demo": ["demo", "--domains", "industrial", "--no-train", "--output", out],
    }


@pytest.mark.parametrize("device, fragment", [("tpu", "--device tpu: not a device segsuite can run on"),
                                              ("cuda:abc", "--device cuda:abc: the GPU index"),
                                              ("gpu", "use auto, cpu, cuda, cuda:N or mps")])
@pytest.mark.parametrize("command", ["train", "evaluate", "run", "tile", "explain", "bench", "demo"])
def test_every_device_option_has_the_one_parser(command, device, fragment, parts, scene, tmp_path, cli):
    out = tmp_path / "out"
    args = device_commands(parts, scene, out)[command]
    assert_one_line_error(cli(*args, "--device", device), fragment)
    assert_nothing_at(out)


def test_resolve_device_refuses_bad_strings_from_python_too():
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.trainer import resolve_device

    with pytest.raises(SegsuiteError, match="not a device"):
        resolve_device("tpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("args, fragment", [
    (["--folds", "0"], "--folds 0: cross-validation needs at least 2 folds"),
    (["--folds", "1"], "--folds 1: cross-validation needs at least 2 folds"),
    (["--ratios", "nan,1"], "--ratios nan,1: give up to three non-negative fractions"),
    (["--ratios", "0.5,0.2,0.2,0.1"], "give up to three"),
    (["--ratios", "0,0"], "not all zero"),
    (["--ratios", "a,b"], "--ratios a,b: must be numbers"),
])
def test_split_refuses_bad_folds_and_ratios(args, fragment, parts, tmp_path, cli):
    out = tmp_path / "splits"
    assert_one_line_error(cli("split", parts, "--output", out, *args), fragment)
    assert_nothing_at(out)


@pytest.mark.parametrize("args, fragment", [
    (["--tile", "99999"], "--tile 99999: must be between 16 and 8192"),
    (["--tile", "0"], "--tile 0: must be between 16 and 8192"),
])
def test_tile_refuses_bad_windows_before_any_output(args, fragment, scene, tmp_path, cli):
    out = tmp_path / "out"
    assert_one_line_error(cli("tile", scene, "--model", SATELLITE_MODEL, "--output", out / "c.tif", *args), fragment)
    assert_nothing_at(out)


# -- band hints name only bands that exist, and alpha is not data -----------------------------

def write_raster(path: Path, image: np.ndarray, colorinterp: list[str] | None = None) -> Path:
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    count, h, w = image.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=image.dtype.name,
                       crs="EPSG:32633", transform=from_origin(500000, 4100000, 10, 10)) as dst:
        dst.write(image)
        if colorinterp:
            dst.colorinterp = [ColorInterp[c] for c in colorinterp]
    return path


@pytest.mark.parametrize("bands, colorinterp, fragments", [
    (1, None, ["1 is selected from this raster's band 1", "only 1 data band(s)"]),
    (3, None, ["3 are selected from this raster's bands 1..3", "only 3 data band(s)"]),
    (4, ["red", "green", "blue", "alpha"], ["bands 1..4 (band 4 is alpha)", "only 3 data band(s)"]),
])
def test_band_hint_names_only_existing_data_bands(bands, colorinterp, fragments, tmp_path, cli):
    image = np.full((bands, 40, 40), 100, np.uint8)
    src = write_raster(tmp_path / "scene.tif", image, colorinterp)
    res = cli("tile", src, "--model", SATELLITE_MODEL, "--output", tmp_path / "out" / "c.tif")
    assert_one_line_error(res, "scene.tif: the model expects 4 band(s)", *fragments)
    assert "1,2,3,4" not in res.stderr  # the old hint named bands the raster does not have
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["status"] for e in summary["inputs"]] == ["failed"]
    assert not (tmp_path / "out" / "c.tif").exists()


def test_band_hint_suggests_existing_bands_when_enough_are_there(tmp_path, cli):
    src = write_raster(tmp_path / "six.tif", np.full((6, 40, 40), 1000, np.uint16))
    assert_one_line_error(cli("tile", src, "--model", SATELLITE_MODEL, "--bands", "2,3",
                              "--output", tmp_path / "out" / "c.tif"), "choose 4 with --bands, e.g. --bands 1,2,3,4")
    assert_one_line_error(cli("tile", src, "--model", SATELLITE_MODEL, "--bands", "1,2,3,9",
                              "--output", tmp_path / "out" / "c.tif"), "band(s) 9 do not exist; the raster has bands 1..6")


# -- 3. stats on a truncated GeoTIFF ---------------------------------------------------------

def test_stats_on_a_truncated_geotiff_is_one_line(scene, tmp_path, cli):
    data = scene.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert_one_line_error(cli("stats", tmp_path / "cut.tif"), "cut.tif: cannot read pixels", "truncated or corrupt")


# -- 4. GeoJSON in WGS84, GeoPackage in the raster's CRS -------------------------------------

def test_geojson_is_wgs84_for_a_crs_without_epsg_code_and_gpkg_keeps_the_crs(tmp_path, cli):
    import pyogrio
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    from segsuite.plugins.satellite.synthetic import render_scene, write_scene

    custom = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15.3 +k=0.9996 +x_0=450000 +y_0=0 +ellps=WGS84 +units=m +no_defs")
    assert custom.to_epsg() is None  # the case the issue describes: no EPSG code to name
    image, _ = render_scene(np.random.default_rng(4), (96, 96), nodata_border=False)
    src = write_scene(tmp_path / "custom.tif", image, crs=custom.to_wkt(), nodata=None, origin=(450000.0, 4100000.0))
    out = tmp_path / "out"
    res = cli("tile", src, "--model", SATELLITE_MODEL, "--output", out / "c.tif", "--vector", out / "c.geojson")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "c.geojson").read_text())
    assert doc["features"] and "crs" not in doc
    west, south, east, north = transform_bounds(custom, "EPSG:4326", 450000, 4100000 - 960, 450000 + 960, 4100000)
    assert 14 < west < east < 16 and 36 < south < north < 38  # degrees, not metres
    coords = np.array([xy for f in doc["features"] for ring in f["geometry"]["coordinates"] for xy in ring])
    eps = 1e-6
    assert (coords[:, 0] >= west - eps).all() and (coords[:, 0] <= east + eps).all()
    assert (coords[:, 1] >= south - eps).all() and (coords[:, 1] <= north + eps).all()
    assert all(f["properties"]["area"] > 0 for f in doc["features"])  # areas stay in the raster's metres²

    res = cli("tile", src, "--model", SATELLITE_MODEL, "--output", tmp_path / "g" / "c.tif", "--vector", tmp_path / "g" / "c.gpkg")
    assert res.exit_code == 0, res.output
    info = pyogrio.read_info(tmp_path / "g" / "c.gpkg")
    assert CRS.from_user_input(info["crs"]) == custom
    bounds = pyogrio.read_bounds(tmp_path / "g" / "c.gpkg")[1]
    assert bounds[0].min() >= 450000 - eps and bounds[2].max() <= 450000 + 960 + eps  # still metres


# -- 5. plugin names, sample counts, the weights-only refusal ---------------------------------

@pytest.mark.parametrize("name", ["a-", "road_", "x-y-"])
def test_plugin_new_refuses_names_that_are_not_package_names(name, tmp_path, cli):
    target = tmp_path / "pkg"
    assert_one_line_error(cli("plugin", "new", name, "--dir", target), f"plugin name {name!r}")
    assert_nothing_at(target)


def test_sample_counts_what_it_wrote_in_every_domains_layout(tmp_path, cli):
    for domain in ("driving", "industrial", "satellite", "medical"):  # Cityscapes, pairs, GeoTIFF pairs, Decathlon
        folder = tmp_path / domain
        res = cli("sample", domain, "--output", folder)
        assert res.exit_code == 0, res.output
        match = re.search(r"wrote (\d+) (labelled sample\(s\)|file\(s\))", res.stdout)
        assert match, res.stdout
        if match.group(2) == "file(s)":
            expected = sum(1 for p in folder.rglob("*") if p.is_file())
        else:
            images = next(d for d in ("images", "imagesTr") if (folder / d).is_dir())
            expected = len(list((folder / images).iterdir()))
        assert int(match.group(1)) == expected > 0, (domain, res.stdout)


class Gadget:
    """Not a tensor: torch.load(weights_only=True) refuses it."""


def test_weights_only_refusal_is_one_complete_sentence(parts, tmp_path, cli):
    evil = tmp_path / "evil.pt"
    torch.save({"weight": Gadget()}, evil)
    out = tmp_path / "run"
    res = cli("train", "industrial", "--data", parts, "--pretrained", evil, "--epochs", "1", "--output", out)
    assert_one_line_error(res, "evil.pt: refused to load", "Gadget", "only plain tensors are accepted")
    line = res.stderr.strip().splitlines()[-1]
    assert "two options" not in line and "\x1b" not in line and line.endswith("safetensors")
    assert_nothing_at(out)


# -- 2. usage errors: one line naming the option and --help -----------------------------------

@pytest.mark.parametrize("args, expected", [
    (["run", "industrial", "--bogus"],
     "segsuite: error: no such option --bogus for `segsuite run industrial`; see `segsuite run industrial --help`"),
    (["--bogus", "plugins"], "segsuite: error: no such option --bogus for `segsuite`; see `segsuite --help`"),
    (["frobnicate"], "segsuite: error: No such command 'frobnicate' for `segsuite`; see `segsuite --help`"),
    (["train", "--epochs", "x"], "see `segsuite train --help`"),
    (["sample"], "segsuite: error: Missing argument 'DOMAIN'; see `segsuite sample --help`"),
])
def test_usage_errors_are_one_line_pointing_at_help(args, expected, cli):
    res = cli(*args)
    assert_one_line_error(res)
    assert expected in res.stderr.strip()


def test_usage_errors_from_the_console_entry_point(segsuite_proc):
    res = segsuite_proc("tile", "x.tif", "--devise", "cpu")
    assert_one_line_error(res, "no such option --devise for `segsuite tile`", "(did you mean --device",
                          "see `segsuite tile --help`")


# -- 6. library chatter ------------------------------------------------------------------------

def png_with_bad_icc_profile(path: Path) -> Path:
    """A valid PNG with a truncated iCCP chunk: libpng warns "iCCP: too short" from C."""
    import struct
    import zlib

    import cv2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    png = buf.tobytes()
    bad = chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 64))
    path.write_bytes(png[:33] + bad + png[33:])  # right after IHDR (8-byte signature + 25-byte chunk)
    return path


def test_library_chatter_stays_off_stderr(tmp_path, segsuite_proc):
    inputs = tmp_path / "in"
    inputs.mkdir()
    png_with_bad_icc_profile(inputs / "a_profile.png")
    write_image(inputs / "b_plain.png", np.full((48, 64, 3), 90, np.uint8))
    (inputs / "c_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # FFmpeg: "moov atom not found"
    out = tmp_path / "out"
    res = segsuite_proc("run", "driving", "--input", inputs, "--output", out, "--device", "cpu")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("segsuite: ") for ln in lines), res.stderr
    assert "libpng" not in res.stderr and "moov" not in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [e["status"] for e in summary["inputs"]] == ["ok", "ok", "failed"]


def test_native_stderr_is_sorted_into_our_words(capfd):
    from segsuite.core.native_stderr import LibraryWarning, library_chatter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with library_chatter("x.png"):
            os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n"
                        b"libpng warning: Image height exceeds user limit in IHDR\nsomeone else's line\n")
    assert [str(w.message) for w in caught if w.category is LibraryWarning] == [
        "x.png: libpng: Image height exceeds user limit in IHDR"]
    err = capfd.readouterr().err
    assert "someone else's line" in err and "libpng" not in err


def test_third_party_warnings_are_one_line(capsys):
    from segsuite.cli.app import show_warning
    from segsuite.core.plugins import PluginWarning

    show_warning(RuntimeWarning("invalid value encountered\nin divide"), RuntimeWarning,
                 "/x/lib/python3.11/site-packages/numpy/lib/_nanfunctions_impl.py", 12)
    show_warning(PluginWarning("plugin x: failed"), PluginWarning, "/x/core/plugins.py", 3)
    assert capsys.readouterr().err.splitlines() == [
        "segsuite: warning: invalid value encountered in divide (RuntimeWarning at numpy/lib/_nanfunctions_impl.py:12)",
        "segsuite: warning: plugin x: failed",
    ]


@pytest.mark.parametrize("args", [
    ["run", "industrial", "--pixel-size", "nan"],
    ["run", "industrial", "--pixel-size", "inf"],
    ["run", "medical", "--min-volume", "nan"],
    ["tile", "--min-area", "nan"],
])
def test_float_options_must_be_finite(cli, tmp_path, args):
    res = cli(*args[:2], *(["--input", tmp_path / "x.png"] if args[0] == "run" else [tmp_path / "x.tif"]), *args[2:])
    # `tile` declares --min-area itself and its parser already refuses nan; `run` checks the RunOption
    assert_one_line_error(res, args[-2])
    if args[0] == "run":
        assert f"{args[-2]} {args[-1]}: must be a finite number" in res.stderr


def test_a_raster_read_whole_must_fit_in_free_memory(cli, tmp_path, monkeypatch):
    import segsuite.core.resources as resources

    scene = ROOT / "sample_data" / "satellite" / "scene.tif"
    monkeypatch.setattr(resources, "available_memory", lambda: 10_000)
    res = cli("explain", "satellite", "--input", scene, "--class", "water", "--output", tmp_path / "out")
    assert_one_line_error(res, "scene.tif: reading this", "`segsuite tile` streams scenes of any size")


def test_library_log_lines_are_said_once(capsys):
    import logging

    from segsuite.cli.app import _LibraryLogFormatter, _OncePerMessage

    logger = logging.getLogger("rasterio._env.test")
    handler = logging.StreamHandler()
    handler.setFormatter(_LibraryLogFormatter())
    handler.addFilter(_OncePerMessage())
    logger.addHandler(handler)
    try:
        for _ in range(4):
            logger.warning("TIFFReadDirectory: Sum of Photometric type-related color channels")
        logger.warning("another complaint")
    finally:
        logger.removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["segsuite: warning: rasterio._env.test: TIFFReadDirectory: Sum of Photometric type-related color channels",
                     "segsuite: warning: rasterio._env.test: another complaint"]


def test_tile_segments_rasters_of_a_few_pixels(cli, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    for side in (1, 8):
        path = tmp_path / f"t{side}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=4, dtype="uint16",
                           crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(np.full((4, side, side), 900, np.uint16))
        res = cli("tile", path, "--output", tmp_path / f"c{side}.tif", "--device", "cpu")
        assert res.exit_code == 0, res.stderr
        with rasterio.open(tmp_path / f"c{side}.tif") as out:
            assert (out.width, out.height) == (side, side)
