"""Bad 2D inputs through the real CLI (issue #13, part A): non-finite pixels, strict JSON, models
that do not suit the command, tiny images, 12-bit data in 16-bit files, headers that claim too
much, unwritable outputs and negative pixel sizes.

Each case asserts what a user sees: the exit status, one line on stderr naming the file, no
traceback, and nothing of the bad input left in the output folder (in a batch: the others done).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.checkpoint import CARD_KEY, FORMAT_KEY, read_card
from segsuite.core.data.images import read_image_array, to_8bit_range, write_image
from segsuite.core.errors import InputFileError
from segsuite.core.io import write_json

INDUSTRIAL = ROOT / "sample_data" / "industrial"
MODEL = INDUSTRIAL / "model.safetensors"
DRIVING_MODEL = ROOT / "sample_data" / "driving" / "model.safetensors"


# -- helpers ----------------------------------------------------------------------------


def nan_tiff(path: Path, shape=(64, 64), bad=((5, 5, np.nan), (6, 6, np.inf))) -> Path:
    """A float32 TIFF (what a camera SDK or a script writes) with some non-finite pixels."""
    a = np.full(shape, 128.0, np.float32)
    for y, x, v in bad:
        a[y, x] = v
    assert cv2.imwrite(str(path), a)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def crafted_png(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes whose header claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * min(width, 1000)) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


def sparse_tiff(path: Path, width: int, height: int) -> Path:
    """An uncompressed 8-bit grey BigTIFF of the claimed size whose pixel data is a hole (a sparse
    file: no disk used)."""
    tags = [(256, 16, width), (257, 16, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 16, 0),
            (277, 3, 1), (279, 16, width * height)]
    data_offset = 16 + 8 + 20 * len(tags) + 8
    tags = [(t, k, data_offset if t == 273 else v) for t, k, v in tags]
    ifd = struct.pack("<Q", len(tags)) + b"".join(struct.pack("<HHQQ", t, k, 1, v) for t, k, v in tags)
    with open(path, "wb") as fh:
        fh.write(b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + struct.pack("<Q", 0))
        fh.truncate(data_offset + width * height)
    return path


def card_checkpoint(tmp_path: Path, name: str, edit) -> Path:
    """The industrial sample checkpoint with its card changed by ``edit(card_dict) -> json text``."""
    from safetensors.torch import load_file, save_file

    card = json.loads(json.dumps(dataclasses.asdict(read_card(MODEL))))
    out = tmp_path / name
    save_file(load_file(str(MODEL)), str(out), metadata={CARD_KEY: edit(card), FORMAT_KEY: "1"})
    return out


def generic_checkpoint(tmp_path: Path) -> Path:
    """The industrial model with a card that names no domain: `segsuite run --model` then uses
    the core's 2D image pipeline."""

    def no_domain(card):
        card["domain"] = None
        return json.dumps(card)

    return card_checkpoint(tmp_path, "generic.safetensors", no_domain)


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def per_input_files(folder: Path) -> list[str]:
    """What a run left in ``folder`` besides the job's own files."""
    own = {"summary.json", "summary.csv", "segsuite.log", ".segsuite-outputs.json"}
    return sorted(p.name for p in folder.iterdir() if p.name not in own) if folder.exists() else []


def strict_json(path: Path):
    def refuse(constant: str):
        raise ValueError(f"{path}: bare {constant} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# -- 1. non-finite pixels ------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["run", "industrial"],
    ["run", "--model", "GENERIC"],
    ["explain", "industrial", "--class", "scratch"],
])
def test_non_finite_pixels_are_refused_with_their_count(cli, tmp_path, command):
    image = nan_tiff(tmp_path / "part.tif")
    out = tmp_path / "out"
    args = [str(generic_checkpoint(tmp_path)) if a == "GENERIC" else a for a in command]
    result = cli(*args, "--input", image, "--output", out)
    assert_one_line_error(result, str(image), "2 of 4096 pixels are not finite")
    assert per_input_files(out) == []
    assert summary(out)["inputs"][0]["status"] == "failed"


def test_an_all_nan_image_is_refused_not_ok(cli, tmp_path):
    image = nan_tiff(tmp_path / "blank.tif", shape=(20, 30), bad=())
    a = np.full((20, 30), np.nan, np.float32)
    cv2.imwrite(str(image), a)
    result = cli("run", "industrial", "--input", image, "--output", tmp_path / "out")
    assert_one_line_error(result, str(image), "600 of 600 pixels are not finite")


def test_in_a_batch_the_non_finite_part_fails_and_the_others_are_inspected(cli, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    shutil.copy(INDUSTRIAL / "parts" / "images" / "good_005.png", parts / "good.png")
    nan_tiff(parts / "bad.tif")
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", parts, "--output", out)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    status = {Path(r["input"]).name: r for r in summary(out)["inputs"]}
    assert status["good.png"]["status"] == "ok" and status["bad.tif"]["status"] == "failed"
    error = status["bad.tif"]["error"]
    assert "\n" not in error and str(parts / "bad.tif") in error and "not finite" in error
    assert strict_json(out / "good.json")["verdict"] == "OK"
    assert not list(out.glob("bad*"))


def test_read_image_refuses_nan_and_counts_pixels_not_values(tmp_path):
    rgb = np.full((10, 10, 3), 0.5, np.float32)
    rgb[0, 0, :] = np.nan  # one pixel, three values
    rgb[1, 1, 2] = -np.inf
    cv2.imwrite(str(tmp_path / "rgb.tif"), rgb)
    with pytest.raises(InputFileError, match=r"rgb.tif: 2 of 100 pixels are not finite"):
        read_image_array(tmp_path / "rgb.tif")


# -- 2. strict JSON -------------------------------------------------------------------------


def test_write_json_never_writes_nan_or_infinity(tmp_path):
    data = {"iou": float("nan"), "n": np.float32("inf"), "arr": np.array([1.0, np.nan, -np.inf]),
            "ok": np.float64(0.25), "nested": [{"x": float("-inf")}], "path": tmp_path}
    path = write_json(tmp_path / "m.json", data)
    back = strict_json(path)
    assert back == {"iou": None, "n": None, "arr": [1.0, None, None], "ok": 0.25, "nested": [{"x": None}],
                    "path": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".bad*"))


def test_every_json_of_real_runs_parses_strictly(cli, tmp_path):
    """Industrial (a batch with a non-finite part), driving, the generic pipeline and evaluation:
    every JSON they write is strict (no NaN, Infinity)."""
    parts = tmp_path / "parts"
    (parts / "images").mkdir(parents=True)
    (parts / "masks").mkdir()
    for name in ("ng_000.png", "good_005.png"):
        shutil.copy(INDUSTRIAL / "parts" / "images" / name, parts / "images" / name)
        shutil.copy(INDUSTRIAL / "parts" / "masks" / name, parts / "masks" / name)
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(INDUSTRIAL / "parts" / "images" / "ng_000.png", batch / "ng.png")
    nan_tiff(batch / "nan.tif")
    frame = next((ROOT / "sample_data" / "driving" / "frames").glob("*.png"))
    runs = {
        "industrial": ["run", "industrial", "--input", batch, "--output", tmp_path / "industrial"],
        "driving": ["run", "driving", "--input", frame, "--output", tmp_path / "driving", "--uncertainty", "entropy"],
        "generic": ["run", "--model", generic_checkpoint(tmp_path), "--input", batch / "ng.png",
                    "--output", tmp_path / "generic"],
        "evaluate": ["evaluate", "industrial", "--model", MODEL, "--data", parts, "--output", tmp_path / "evaluate"],
    }
    for name, args in runs.items():
        result = cli(*args)
        assert result.exit_code in (0, 2), f"{name}: {result.stderr}"
        files = list((tmp_path / name).rglob("*.json"))
        assert files, name
        for path in files:
            strict_json(path)
    assert strict_json(tmp_path / "industrial" / "ng.json")["verdict"] == "NG"


# -- 3. models that do not suit the command ----------------------------------------------------


def test_a_model_of_another_domain_is_refused_before_any_work(cli, tmp_path):
    image = tmp_path / "part.png"
    write_image(image, np.full((40, 40), 128, np.uint8))
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--model", DRIVING_MODEL, "--output", out)
    assert_one_line_error(result, str(DRIVING_MODEL), "a model for the driving domain", "--allow-domain-mismatch")
    assert not out.exists()
    forced = cli("run", "industrial", "--input", image, "--model", DRIVING_MODEL, "--output", out,
                 "--allow-domain-mismatch")
    assert forced.exit_code == 0, forced.stderr
    assert (out / "part.json").exists()


def _more_names(card):
    # with a colour too, so that only the count of network outputs can catch it
    card["class_map"]["names"].append("dent")
    if card["class_map"].get("colors"):
        card["class_map"]["colors"].append([10, 20, 30])
    return json.dumps(card)


def _fewer_names(card):
    card["class_map"]["names"].pop()
    card["class_map"]["colors"].pop()
    return json.dumps(card)


def _wrong_shapes(card):
    card["model"]["num_classes"] = 5
    card["class_map"]["names"].append("dent")
    card["class_map"]["colors"].append([1, 2, 3])
    return json.dumps(card)


def _narrower(card):
    card["model"]["options"]["channels"] = [8, 16, 32, 64]
    return json.dumps(card)


@pytest.mark.parametrize("edit, fragment", [
    (_more_names, "names 5 class(es) but the network has 4 output channel(s)"),
    (_fewer_names, "names 3 class(es) but the network has 4 output channel(s)"),
    (_wrong_shapes, "has shape [4], but architecture 'bnunet' as the card describes it needs [5]"),
    (_narrower, "has shape [128, 64, 3, 3], but architecture 'bnunet' as the card describes it needs [64, 32, 3, 3]"),
    (lambda card: json.dumps([card]), "the model card is a JSON array, not an object"),
    (lambda card: "42", "the model card is a JSON number, not an object"),
    (lambda card: json.dumps({**card, "class_map": ["a", "b"]}), "'class_map' is a JSON array"),
    (lambda card: json.dumps({**card, "model": {"arch": "resunet"}}), "does not name the network's in_channels"),
], ids=["more-names", "fewer-names", "head-shape", "narrower", "array-card", "number-card", "class-map-list",
        "no-channels"])
def test_a_checkpoint_whose_card_and_weights_disagree_is_one_line(cli, tmp_path, edit, fragment):
    ckpt = card_checkpoint(tmp_path, "bad.safetensors", edit)
    image = tmp_path / "part.png"
    write_image(image, np.full((40, 40), 128, np.uint8))
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--model", ckpt, "--output", out)
    assert_one_line_error(result, str(ckpt), fragment)
    assert per_input_files(out) == []


# -- 4. tiny images ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (2, 5)])
def test_tiny_parts_are_inspected_at_their_size(cli, tmp_path, size):
    image = tmp_path / "tiny.png"
    write_image(image, np.full(size, 128, np.uint8))
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--output", out, "--uncertainty", "tta")
    assert result.exit_code == 0, result.stderr
    assert read_image_array(out / "tiny_mask.png").shape == size
    assert strict_json(out / "tiny.json")["size"] == list(size)


@pytest.mark.parametrize("command, pixel", [
    (["run", "driving"], (1, 1, 3)),
    (["run", "--model", "GENERIC"], (1, 1)),
    (["explain", "industrial", "--class", "scratch"], (1, 1, 3)),
    (["explain", "driving", "--class", "car"], (1, 1, 3)),
])
def test_a_one_pixel_image_works_in_every_2d_path(cli, tmp_path, command, pixel):
    image = tmp_path / "dot.png"
    write_image(image, np.full(pixel, 90, np.uint8))
    args = [str(generic_checkpoint(tmp_path)) if a == "GENERIC" else a for a in command]
    out = tmp_path / "out"
    result = cli(*args, "--input", image, "--output", out)
    assert result.exit_code == 0, result.stderr
    records = [strict_json(p) for p in out.glob("dot*.json")]
    assert records and all(r.get("size") == [1, 1] for r in records)


def test_a_tiny_image_is_labelled_like_the_same_colour_at_the_model_minimum():
    from segsuite.core.infer import Predictor

    predictor = Predictor.from_checkpoint(MODEL, device="cpu")
    assert predictor.minimum_size == (1, 1)  # batch norm: any size; the network pads to its stride (8)
    for value in (40, 128, 230):
        dot = predictor.probabilities(np.full((1, 1, 1), value, np.uint8))
        block = predictor.probabilities(np.full((1, 8, 8), value, np.uint8))  # what the dot is padded to
        assert dot.shape == (1, 4, 1, 1)
        assert torch.allclose(dot[0, :, 0, 0], block[0, :, 0, 0], atol=1e-5)


def _instance_norm_checkpoint(tmp_path):
    from segsuite.core.checkpoint import ModelCard, save_checkpoint
    from segsuite.core.classmap import ClassMap
    from segsuite.core.models import build_model

    model = build_model("resunet", 1, 4, channels=[16, 32, 64, 128], num_res_units=1)
    path = tmp_path / "instance_norm.safetensors"
    save_checkpoint(path, model, ModelCard(model=model.card(), class_map=ClassMap(("a", "b", "c", "d")).to_dict()))
    return path


def test_a_tiny_image_is_padded_to_an_instance_norm_model_minimum(tmp_path):
    from segsuite.core.infer import Predictor

    predictor = Predictor.from_checkpoint(_instance_norm_checkpoint(tmp_path), device="cpu")
    assert predictor.minimum_size == (16, 16)  # a U-Net of stride 8 with instance normalisation
    for value in (40, 128, 230):
        dot = predictor.probabilities(np.full((1, 1, 1), value, np.uint8))
        block = predictor.probabilities(np.full((1, 16, 16), value, np.uint8))
        assert dot.shape == (1, 4, 1, 1)
        assert torch.allclose(dot[0, :, 0, 0], block[0, :, 0, 0], atol=1e-5)


def test_bench_refuses_sizes_below_the_model_minimum(cli, tmp_path):
    model = _instance_norm_checkpoint(tmp_path)
    assert_one_line_error(cli("bench", "--model", model, "--size", "1x1", "--runs", "1", "--warmup", "0"),
                          "--size 1x1", "at least 16x16")
    assert_one_line_error(cli("bench", "--size", "0x5"), "--size 0x5", "at least 1")
    assert_one_line_error(cli("bench", "--size", "-3x5"), "--size '-3x5'")
    ok = cli("bench", "--model", model, "--size", "16x16", "--runs", "1", "--warmup", "0")
    assert ok.exit_code == 0, ok.stderr


# -- 5. 12-bit data in 16-bit files ------------------------------------------------------------


def test_twelve_bit_data_scales_by_4095_and_sixteen_bit_by_65535():
    twelve = np.array([0, 2048, 4095], np.uint16)
    assert np.allclose(to_8bit_range(twelve), [0, 2048 * 255 / 4095, 255])
    sixteen = np.array([0, 4096, 65535], np.uint16)
    assert np.allclose(to_8bit_range(sixteen), [0, 4096 * 255 / 65535, 255])
    eight = np.array([1, 2], np.uint8)
    assert to_8bit_range(eight) is eight


def test_a_twelve_bit_part_gets_the_verdict_of_its_eight_bit_original(cli, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    eight = read_image_array(INDUSTRIAL / "parts" / "images" / "ng_000.png")
    write_image(parts / "eight.png", eight)
    write_image(parts / "twelve.png", np.round(eight.astype(np.float64) * 4095 / 255).astype(np.uint16))
    assert read_image_array(parts / "twelve.png").dtype == np.uint16
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", parts, "--output", out)
    assert result.exit_code == 0, result.stderr
    a, b = strict_json(out / "eight.json"), strict_json(out / "twelve.json")
    assert a["verdict"] == b["verdict"] == "NG"
    assert [d["class"] for d in a["defects"]] == [d["class"] for d in b["defects"]]
    for da, db in zip(a["defects"], b["defects"]):  # full-range scaling would leave a dark part: other defects
        assert abs(da["area_px"] - db["area_px"]) <= max(3, 0.03 * da["area_px"])
    assert math.isclose(a["max_defect_probability"], b["max_defect_probability"], abs_tol=0.02)


# -- 6. headers that claim more than the file or memory holds -----------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("shape, dtype", [((30, 50), np.uint8), ((30, 50, 3), np.uint8), ((30, 50, 4), np.uint8),
                                          ((30, 50), np.uint16), ((30, 50, 3), np.uint16), ((30, 50), np.float32)])
def test_headers_agree_with_what_opencv_decodes(tmp_path, suffix, shape, dtype):
    """The header parser must never refuse a sound file: its size is the decoded one."""
    from segsuite.core.data.image_headers import read_header

    path = tmp_path / f"x{suffix}"
    if not cv2.imwrite(str(path), np.full(shape, 7, dtype)):
        pytest.skip(f"OpenCV does not write {np.dtype(dtype).name} {suffix}")
    decoded = read_image_array(path)
    header = read_header(path)
    assert (header.height, header.width) == decoded.shape[:2] and header.fits_file
    assert header.bytes_per_sample >= decoded.dtype.itemsize or suffix == ".bmp"


def test_a_png_header_claiming_20000_squared_px_is_refused_before_decoding(cli, tmp_path):
    image = crafted_png(tmp_path / "huge.png", 20000, 20000)
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match="claims 20000x20000 px"):
        read_image_array(image)
    assert time.perf_counter() - t0 < 0.5
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--output", out)
    assert_one_line_error(result, str(image), "20000x20000 px", "truncated or corrupt")
    assert per_input_files(out) == []


def test_a_sparse_tiff_larger_than_memory_is_refused_before_decoding(segsuite_proc, tmp_path):
    image = sparse_tiff(tmp_path / "scan.tif", 300_000, 300_000)  # 90 GB of pixels, no disk used
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match="300000x300000 px"):
        read_image_array(image)
    assert time.perf_counter() - t0 < 0.5
    result = segsuite_proc("run", "industrial", "--input", image, "--output", tmp_path / "out")
    assert_one_line_error(result, str(image), "300000x300000 px")


def test_an_image_that_does_not_fit_in_free_memory_is_refused(cli, tmp_path, monkeypatch):
    import segsuite.core.data.images as images

    image = tmp_path / "part.png"
    write_image(image, np.full((300, 400), 128, np.uint8))
    monkeypatch.setattr(images, "available_memory", lambda: 100_000)
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--output", out)
    assert_one_line_error(result, str(image), "400x300 px image needs about 703 KB of memory", "98 KB free")
    assert per_input_files(out) == []


def test_a_cut_bmp_is_refused_from_its_header(cli, tmp_path):
    ok = tmp_path / "ok.bmp"
    write_image(ok, np.full((50, 60, 3), 100, np.uint8))
    cut = tmp_path / "cut.bmp"
    cut.write_bytes(ok.read_bytes()[:2000])
    result = cli("run", "industrial", "--input", cut, "--output", tmp_path / "out")
    assert_one_line_error(result, str(cut), "more than the 2 KB file can hold")


# -- 7. unwritable outputs name the output, not the hidden temporary file --------------------------


def test_a_permission_error_names_the_output_not_the_temporary_file(cli, tmp_path, monkeypatch):
    real_replace = os.replace

    def refuse(src, dst, *a, **k):
        if str(dst).endswith("_mask.png"):
            raise PermissionError(13, "Permission denied", str(src), None, str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", refuse)
    image = tmp_path / "part.png"
    write_image(image, np.full((40, 40), 128, np.uint8))
    out = tmp_path / "out"
    result = cli("run", "industrial", "--input", image, "--output", out)
    assert_one_line_error(result, str(out / "part_mask.png"), "Permission denied")
    assert ".partial" not in result.stderr
    assert per_input_files(out) == []


def test_an_unwritable_folder_names_the_intended_output(cli, tmp_path, monkeypatch):
    import tempfile

    def refuse(*a, dir=None, **k):
        raise PermissionError(13, "Permission denied", os.path.join(str(dir), ".x.partial-1-abc"))

    image = tmp_path / "part.png"
    write_image(image, np.full((40, 40), 128, np.uint8))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "locked" / "metrics.json"
    with pytest.raises(PermissionError) as info:
        write_json(target, {"a": 1})
    assert info.value.filename == str(target) and "make this one writable" in info.value.strerror
    result = cli("run", "industrial", "--input", image, "--output", tmp_path / "locked")
    assert_one_line_error(result, str(tmp_path / "locked"), "Permission denied")
    assert ".partial" not in result.stderr


# -- 8. options ------------------------------------------------------------------------------


def test_a_negative_pixel_size_is_refused_before_anything_is_written(cli, tmp_path):
    image = tmp_path / "part.png"
    write_image(image, np.full((40, 40), 128, np.uint8))
    out = tmp_path / "out"
    assert_one_line_error(cli("run", "industrial", "--input", image, "--pixel-size", "-0.5", "--output", out),
                          "--pixel-size -0.5", "greater than 0")
    assert not out.exists()


def test_unreadable_images_say_why(cli, tmp_path):
    good = ROOT / "sample_data" / "industrial" / "parts" / "images" / "ng_001.png"
    data = good.read_bytes()
    (tmp_path / "a_cut.png").write_bytes(data[: len(data) // 3])  # header intact, the image data cut
    (tmp_path / "b_empty.png").write_bytes(b"")
    (tmp_path / "c_text.png").write_text("hello")
    res = cli("run", "industrial", "--input", tmp_path, "--output", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert "a_cut.png: not a readable image (a PNG file that cannot be decoded: it is truncated or damaged)" in errors[0]
    assert "b_empty.png" in errors[1] and "the file is empty" in errors[1]
    assert "c_text.png" in errors[2] and "PNG, JPEG, BMP or TIFF expected" in errors[2]
