"""Medical plugin: label volumes keep the input geometry voxel for voxel; volume reports; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins
from segsuite.plugins.medical.classes import ABDOMEN, LIVER
from segsuite.plugins.medical.preprocess import Preprocessing


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resunet", 1, 3, spatial_dims=3, registry=load_plugins(entry_points=False), channels=[4, 8],
                        num_res_units=0)
    prep = Preprocessing(spacing=(1.5, 1.5, 2.0), intensity="ct_window")
    card = ModelCard(model=model.card(), class_map=LIVER.to_dict(), domain="medical", patch_size=[16, 16, 16],
                     normalization=prep.to_dict())
    return save_checkpoint(tmp_path_factory.mktemp("m") / "ct.safetensors", model, card)


def affines():
    angle = np.deg2rad(25)
    oblique = np.array([[np.cos(angle), -np.sin(angle), 0, -90], [np.sin(angle), np.cos(angle), 0, 40],
                        [0, 0, 1, -30], [0, 0, 0, 1]]) @ np.diag([0.7, 0.7, 3.0, 1])
    lps = np.diag([-0.8, -0.8, 2.5, 1.0])  # flipped in x and y, as DICOM-derived (LPS) volumes often are
    lps[:3, 3] = [100, 120, -50]
    return {"oblique": oblique, "lps": lps, "aniso": np.diag([0.5, 1.0, 5.0, 1.0])}


@pytest.mark.parametrize("kind", ["oblique", "lps", "aniso"])
def test_label_volume_keeps_the_exact_geometry(ckpt, tmp_path, cli, kind):
    affine = affines()[kind]
    rng = np.random.default_rng(0)
    data = rng.normal(0, 200, (21, 18, 11)).astype(np.int16)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    nib.save(img, tmp_path / f"{kind}.nii.gz")
    res = cli("run", "medical", "--input", tmp_path / f"{kind}.nii.gz", "--model", ckpt, "--output", tmp_path / "out",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    seg = nib.load(tmp_path / "out" / f"{kind}_seg.nii.gz")
    assert seg.shape == data.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, img.affine, atol=1e-5)
    assert int(seg.header["qform_code"]) == 1 and int(seg.header["sform_code"]) == 2
    np.testing.assert_allclose(seg.header.get_zooms(), img.header.get_zooms(), atol=1e-6)
    assert nib.aff2axcodes(seg.affine) == nib.aff2axcodes(img.affine)
    labels = np.asarray(seg.dataobj)
    report = json.loads((tmp_path / "out" / f"{kind}_seg.json").read_text())
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for c, name in enumerate(LIVER.names[1:], start=1):
        assert report["classes"][name]["voxels"] == int((labels == c).sum())
        assert report["classes"][name]["volume_ml"] == pytest.approx((labels == c).sum() * voxel_ml, abs=1e-3)
    assert "not for diagnostic use" in report["disclaimer"]


def test_components_and_largest_volume(tmp_path):
    from segsuite.plugins.medical.io import read_nifti
    from segsuite.plugins.medical.volumes import volume_report

    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "v.nii.gz")
    item = read_nifti(tmp_path / "v.nii.gz")
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:7, 2:7, 2:7] = 1  # 125 voxels of 8 mm3 = 1 mL
    labels[12:14, 12:14, 12:14] = 1  # 8 voxels, a second island
    labels[15, 15, 15] = 2
    r = volume_report(labels, item, LIVER.names)
    assert r["classes"]["liver"] == {"voxels": 133, "volume_ml": pytest.approx(1.064), "components": 2,
                                     "largest_component_ml": pytest.approx(1.0)}
    assert r["classes"]["tumour"]["components"] == 1


def test_bad_volumes_are_one_line_errors_with_nothing_left(ckpt, tmp_path, cli):
    (tmp_path / "text.nii.gz").write_text("not a volume")
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "text.nii.gz", "--model", ckpt, "--output", tmp_path / "o"),
                          "text.nii.gz: not a readable NIfTI file")
    good = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4))
    nib.save(good, tmp_path / "ok.nii.gz")
    raw = (tmp_path / "ok.nii.gz").read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "trunc.nii.gz", "--model", ckpt, "--output", tmp_path / "o"),
                          "trunc.nii.gz")
    nan = np.zeros((8, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "nan.nii.gz", "--model", ckpt, "--output", tmp_path / "o"),
                          "nan.nii.gz: 1 voxels are NaN or infinite")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), tmp_path / "four.nii.gz")
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "four.nii.gz", "--model", ckpt, "--output", tmp_path / "o"),
                          "3 volume(s) along the 4th dimension but the model takes 1 channel(s)")
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert written == [".segsuite-outputs.json", "segsuite.log", "summary.csv", "summary.json"]  # nothing half-written
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["counts"]["failed"] == 1


def test_postprocessing_options():
    from segsuite.plugins.medical.volumes import postprocess

    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # 216 voxels, with a hole
    labels[4, 4, 4] = 0
    labels[15:17, 15:17, 15:17] = 1  # 8 voxels
    labels[12, 2, 2] = 2  # 1 voxel
    voxel_ml = 0.001  # 1 mm3 voxels
    largest = postprocess(labels, voxel_ml, keep_largest=True)
    assert (largest == 1).sum() == 215 and largest[15, 15, 15] == 0 and largest[12, 2, 2] == 2
    small_gone = postprocess(labels, voxel_ml, min_volume_ml=0.005)
    assert small_gone[12, 2, 2] == 0 and small_gone[15, 15, 15] == 1
    filled = postprocess(labels, voxel_ml, fill_holes=True)
    assert filled[4, 4, 4] == 1 and (filled == 1).sum() == 216 + 8


def test_run_medical_postprocessing_flags(ckpt, tmp_path, cli):
    nib.save(nib.Nifti1Image(np.random.default_rng(2).normal(0, 200, (16, 16, 12)).astype(np.int16), np.eye(4)),
             tmp_path / "p.nii.gz")
    res = cli("run", "medical", "--input", tmp_path / "p.nii.gz", "--model", ckpt, "--output", tmp_path / "out",
              "--keep-largest", "--fill-holes", "--min-volume", "0.001", "--device", "cpu")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "p_seg.json").read_text())
    assert all(v["components"] <= 1 for v in report["classes"].values())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["options"]["keep_largest"] is True and summary["options"]["min_volume"] == 0.001
    # a bad value is refused before any input is read or anything is written
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "p.nii.gz", "--model", ckpt, "--output",
                              tmp_path / "neg", "--min-volume", "-1"), "--min-volume -1", "at least 0")
    assert not (tmp_path / "neg").exists()


def test_run_medical_help_lists_the_medical_options_only(cli):
    res = cli("run", "medical", "--help")
    assert res.exit_code == 0, res.output
    for flag in ("--keep-largest", "--fill-holes", "--min-volume", "--probabilities", "--tta", "--fast", "--uncertainty",
                 "--skip-existing", "--report"):
        assert flag in res.output
    assert "--threshold" not in res.output and "--smooth" not in res.output


# -- preprocessing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("codes", ["RAS", "LPS", "PLS", "ASR", "LIP", "RPI"])
def test_reorientation_is_canonical_and_exactly_inverted(codes):
    from segsuite.plugins.medical.preprocess import from_model_grid, to_model_grid
    from segsuite.plugins.medical.synthetic import random_affine

    rng = np.random.default_rng(3)
    affine, shape = random_affine(rng, (90.0, 70.0, 50.0), axcodes=codes)
    volume = rng.normal(size=(1, *shape)).astype(np.float32)
    x, _, grid = to_model_grid(volume, affine, Preprocessing(spacing=None, intensity="none"))
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume[0], affine))
    np.testing.assert_array_equal(x[0].numpy(), np.asarray(canonical.dataobj))
    np.testing.assert_array_equal(from_model_grid(x, grid), volume)  # lossless both ways


def test_the_same_anatomy_lands_on_the_same_side_in_any_orientation():
    """A phantom stored RAS and LPS (same world anatomy): after preprocessing the label volumes agree."""
    from segsuite.plugins.medical.preprocess import to_model_grid
    from segsuite.plugins.medical.synthetic import FOV_MM, random_affine, render_phantom

    canon = []
    for codes in ("RAS", "LPS", "SPL"):
        affine, shape = random_affine(np.random.default_rng(0), FOV_MM, spacing=(5.0, 5.0, 5.0), axcodes=codes,
                                      max_tilt_deg=0)
        image, labels = render_phantom(np.random.default_rng(7), affine, shape, noise_hu=0)
        _, lab, _ = to_model_grid(image[None].astype(np.float32), affine, Preprocessing(spacing=(5.0, 5.0, 5.0)),
                                  labels=labels)
        lab = lab.numpy()
        lab[lab == 4] = 1  # lesion centres are drawn from the liver's voxel list, whose order depends on the grid
        canon.append(lab)
    assert all(np.array_equal(canon[0], c) for c in canon[1:])
    liver_x = np.nonzero(canon[0] == 1)[0].mean()
    spleen_x = np.nonzero(canon[0] == 2)[0].mean()
    assert liver_x > spleen_x  # RAS: the first axis grows towards the patient's right, where the liver is


def test_resampling_to_model_spacing_and_back_keeps_the_grid(tmp_path):
    from segsuite.plugins.medical.preprocess import from_model_grid, to_model_grid

    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    volume = np.zeros((1, 50, 40, 12), np.float32)
    volume[0, 10:30, 10:30, 3:9] = 1.0
    prep = Preprocessing(spacing=(2.0, 2.0, 2.0), intensity="none")
    x, _, grid = to_model_grid(volume, affine, prep)
    assert tuple(x.shape[1:]) == (20, 16, 18)
    probs = torch.cat([1 - x, x])  # a perfect "model": background / object
    back = from_model_grid(probs, grid)
    assert back.shape == (2, 50, 40, 12)
    agree = (back.argmax(0) == volume[0]).mean()
    assert agree > 0.98


# -- metrics ---------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecates one of its own internal arguments
def test_dice_hd95_and_nsd_equal_monai_on_anisotropic_volumes():
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
    from scipy import ndimage

    from segsuite.plugins.medical.metrics import dice, hd95, nsd

    rng = np.random.default_rng(0)
    for spacing in ((0.8, 1.3, 3.0), (2.0, 2.0, 2.0)):
        ref = ndimage.gaussian_filter(rng.normal(size=(40, 36, 30)), 3) > 0.02
        pred = ndimage.binary_dilation(ref) ^ (ndimage.gaussian_filter(rng.normal(size=ref.shape), 2) > 0.15)
        onehot = lambda m: torch.from_numpy(np.stack([~m, m]))[None].float()  # noqa: E731
        theirs_hd = float(compute_hausdorff_distance(onehot(pred), onehot(ref), percentile=95, spacing=spacing))
        theirs_nsd = float(compute_surface_dice(onehot(pred), onehot(ref), class_thresholds=[2.0], spacing=spacing))
        assert hd95(pred, ref, spacing) == pytest.approx(theirs_hd, rel=1e-5, abs=1e-5)  # MONAI: float32
        assert nsd(pred, ref, spacing, 2.0) == pytest.approx(theirs_nsd, rel=1e-5, abs=1e-6)
        theirs_dice = float(compute_dice(onehot(pred), onehot(ref), include_background=False))
        assert dice(pred, ref) == pytest.approx(theirs_dice, rel=1e-5, abs=1e-6)


def test_metrics_respect_spacing_and_the_empty_policy():
    from segsuite.plugins.medical.metrics import case_metrics, hd95

    ref = np.zeros((30, 30, 30), np.uint8)
    ref[5:15, 5:15, 5:15] = 1
    pred = np.zeros_like(ref)
    pred[5:15, 5:15, 8:18] = 1  # shifted 3 voxels along z
    assert hd95(pred == 1, ref == 1, (1.0, 1.0, 2.5)) == pytest.approx(7.5)  # 3 voxels of 2.5 mm
    m = case_metrics(pred, ref, (1.0, 1.0, 2.5), ("background", "organ", "lesion"), tolerance_mm=2.0)
    assert m["organ"]["dice"] == pytest.approx(0.7)
    assert m["organ"]["volume_error_ml"] == pytest.approx(0.0)
    assert np.isnan(m["lesion"]["dice"]) and np.isnan(m["lesion"]["hd95_mm"]) and np.isnan(m["lesion"]["nsd"])
    pred[20:22, 20:22, 20:22] = 2  # a false-positive lesion where the reference has none
    m = case_metrics(pred, ref, (1.0, 1.0, 2.5), ("background", "organ", "lesion"), tolerance_mm=2.0)
    assert m["lesion"]["dice"] == 0.0 and m["lesion"]["nsd"] == 0.0 and np.isnan(m["lesion"]["hd95_mm"])
    assert m["lesion"]["predicted_ml"] == pytest.approx(8 * 2.5 / 1000)


# -- datasets, training and evaluation ----------------------------------------------------------

def _tiny_train(cli, data, out, *extra):
    return cli("train", "medical", "--data", data, "--epochs", "1", "--batch-size", "2", "--patch-size", "32,32,32",
               "--model-option", "channels=[4,8]", "--device", "cpu",
               "--output", out, *extra)


def test_train_and_evaluate_medical_on_generated_phantoms(cli, tmp_path):
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    data = make_phantom_dataset(tmp_path / "msd", n=2, seed=5)
    res = _tiny_train(cli, data, tmp_path / "run", "--val", data)
    assert res.exit_code == 0, res.output
    card = json.loads(json.dumps(__import__("segsuite.core.checkpoint", fromlist=["read_card"]).read_card(
        tmp_path / "run" / "best.safetensors").normalization))
    assert card["kind"] == "volume" and card["orientation"] == "RAS" and card["intensity"] == "ct_window"
    assert len(card["spacing"]) == 3 and all(3.0 < s < 7.0 for s in card["spacing"])  # median of the cases
    res = cli("evaluate", "medical", "--model", tmp_path / "run" / "best.safetensors", "--data", data,
              "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["cases"] == 2 and set(metrics["classes"]) == set(ABDOMEN.names[1:])
    assert {"dice", "hd95_mm", "nsd", "volume_error_ml"} <= set(metrics["classes"]["liver"])
    assert (tmp_path / "ev" / "per_case.csv").read_text().startswith("case,class,dice,hd95_mm,nsd")
    assert (tmp_path / "ev" / "confusion.png").is_file()
    assert "class             Dice   HD95 mm     NSD  vol err mL  scored" in res.stdout
    assert "mean Dice" in res.stdout and f"wrote {tmp_path / 'ev' / 'metrics.json'}, per_case.csv, confusion.png" in res.stdout


def test_nnunet_v2_and_paired_layouts_are_read(tmp_path):
    import shutil

    from segsuite.plugins.medical.dataset import scan_cases
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    msd = make_phantom_dataset(tmp_path / "msd", n=2, seed=6)
    v2 = tmp_path / "v2"
    (v2 / "imagesTr").mkdir(parents=True)
    shutil.copytree(msd / "labelsTr", v2 / "labelsTr")
    for p in (msd / "imagesTr").iterdir():
        shutil.copy(p, v2 / "imagesTr" / p.name.replace(".nii.gz", "_0000.nii.gz"))
    (v2 / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
                                                 "file_ending": ".nii.gz"}))
    cases = scan_cases(v2)
    assert [c.name for c in cases] == ["phantom_006_000", "phantom_006_001"]
    assert cases[0].images[0].name == "phantom_006_000_0000.nii.gz" and cases[0].label.name == "phantom_006_000.nii.gz"
    pairs = tmp_path / "pairs"
    shutil.copytree(msd / "imagesTr", pairs / "images")
    shutil.copytree(msd / "labelsTr", pairs / "labels")
    assert [c.label.name for c in scan_cases(pairs)] == ["phantom_006_000.nii.gz", "phantom_006_001.nii.gz"]


def test_bad_training_labels_are_one_line_errors(cli, tmp_path):
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    def broken(name, change):
        data = make_phantom_dataset(tmp_path / name, n=1, seed=8)
        label_path = next((data / "labelsTr").iterdir())
        lab = nib.load(label_path)
        arr, affine = change(np.asarray(lab.dataobj), lab.affine.copy())
        nib.save(nib.Nifti1Image(arr, affine), label_path)
        return data, label_path.name

    cases = [
        ("shape", lambda a, f: (a[:-1], f), "label shape"),
        ("affine", lambda a, f: (a, f @ np.diag([1, 1, 1.5, 1])), "label affine differs from its image's"),
        ("ids", lambda a, f: (np.where(a == 4, 9, a).astype(np.uint8), f), "class id(s) [9] outside the class map"),
    ]
    for name, change, message in cases:
        data, label_name = broken(name, change)
        res = _tiny_train(cli, data, tmp_path / f"run_{name}")
        assert_one_line_error(res, message)
        assert label_name in res.output
        assert not (tmp_path / f"run_{name}").exists() or not list((tmp_path / f"run_{name}").glob("*.safetensors"))
    res = _tiny_train(cli, tmp_path / "shape" / "imagesTr", tmp_path / "r")
    assert_one_line_error(res, "not a medical dataset this domain can read")


# -- run options -----------------------------------------------------------------------------------

def test_probabilities_uncertainty_tta_and_fast_outputs(ckpt, tmp_path, cli):
    affine = affines()["lps"]
    data = np.random.default_rng(4).normal(0, 200, (20, 18, 9)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "c.nii.gz")
    res = cli("run", "medical", "--input", tmp_path / "c.nii.gz", "--model", ckpt, "--output", tmp_path / "o",
              "--probabilities", "--uncertainty", "entropy", "--device", "cpu")
    assert res.exit_code == 0, res.output
    seg = nib.load(tmp_path / "o" / "c_seg.nii.gz")
    probs = nib.load(tmp_path / "o" / "c_probabilities.nii.gz")
    unc = nib.load(tmp_path / "o" / "c_uncertainty.nii.gz")
    assert probs.shape == (*data.shape, 3) and unc.shape == data.shape
    for img in (probs, unc):
        np.testing.assert_allclose(img.affine, seg.affine, atol=1e-6)
    p = probs.get_fdata()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=0.02)  # stored at 8 bits per class
    np.testing.assert_array_equal(p.argmax(-1)[np.sort(p, -1)[..., -1] - np.sort(p, -1)[..., -2] > 0.02],
                                  np.asarray(seg.dataobj)[np.sort(p, -1)[..., -1] - np.sort(p, -1)[..., -2] > 0.02])
    u = unc.get_fdata()
    assert 0.0 <= u.min() and u.max() <= 1.0 and u.std() > 0
    report = json.loads((tmp_path / "o" / "c_seg.json").read_text())
    assert report["uncertainty"]["method"] == "entropy" and report["tta"] is False
    res = cli("run", "medical", "--input", tmp_path / "c.nii.gz", "--model", ckpt, "--output", tmp_path / "t", "--tta",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "t" / "c_seg.json").read_text())["tta"] is True
    res = cli("run", "medical", "--input", tmp_path / "c.nii.gz", "--model", ckpt, "--output", tmp_path / "f", "--fast",
              "--tta", "--device", "cpu")
    assert res.exit_code == 0 and json.loads((tmp_path / "f" / "c_seg.json").read_text())["tta"] is False
    assert_one_line_error(cli("run", "medical", "--input", tmp_path / "c.nii.gz", "--model", ckpt, "--uncertainty",
                              "mcdropout", "--output", tmp_path / "m"), "dropout")
    assert not (tmp_path / "m").exists()  # refused when the model was loaded, before anything was written


def test_batch_run_continues_past_a_bad_file(ckpt, tmp_path, cli):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(7)  # not all zeros: a blank volume is refused (tests/test_bad_inputs_medical.py)
    nib.save(nib.Nifti1Image(rng.normal(0, 200, (12, 12, 8)).astype(np.int16), np.eye(4)), folder / "a.nii.gz")
    (folder / "b.nii.gz").write_text("broken")
    nib.save(nib.Nifti1Image(rng.normal(0, 200, (12, 12, 8)).astype(np.int16), np.eye(4)), folder / "c.nii")
    res = cli("run", "medical", "--input", folder, "--model", ckpt, "--output", tmp_path / "o", "--device", "cpu")
    assert res.exit_code == 2
    assert "1 of 3 failed" in res.stderr and "b.nii.gz" in res.stderr
    assert sorted(p.name for p in (tmp_path / "o").glob("*_seg.nii.gz")) == ["a_seg.nii.gz", "c_seg.nii.gz"]


def _nan_affine_nifti(path):
    """A NIfTI whose sform holds a NaN (nibabel refuses to write one, so the header bytes are patched)."""
    import gzip
    import struct

    img = nib.Nifti1Image(np.zeros((10, 10, 8), np.int16), np.eye(4))
    img.set_sform(np.eye(4), code=1)
    raw = bytearray(img.to_bytes())
    raw[280:284] = struct.pack("<f", float("nan"))  # srow_x[0] of the NIfTI-1 header
    path.write_bytes(gzip.compress(bytes(raw)))
    assert np.isnan(nib.load(path).affine).any()


def test_batch_with_bad_files_first_and_last_writes_the_good_case(ckpt, tmp_path, cli):
    folder = tmp_path / "in"
    folder.mkdir()
    _nan_affine_nifti(folder / "a_nan.nii.gz")  # sorts first
    nib.save(nib.Nifti1Image(np.random.default_rng(5).normal(0, 200, (12, 12, 8)).astype(np.int16), np.eye(4)),
             folder / "b_good.nii.gz")
    (folder / "c_text.nii").write_text("not a NIfTI file at all\n")  # sorts last
    res = cli("run", "medical", "--input", folder, "--model", ckpt, "--output", tmp_path / "o", "--device", "cpu")
    assert res.exit_code == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 3 and "Traceback" not in res.stderr
    assert "a_nan.nii.gz: the header's voxel-to-world matrix (qform/sform) is not finite" in errors[0]
    assert "c_text.nii: not a readable NIfTI file" in errors[1] and "2 of 3 failed" in errors[2]
    assert "a bug" not in res.stderr  # both are the input's fault, reported as such
    assert nib.load(tmp_path / "o" / "b_good_seg.nii.gz").shape == (12, 12, 8)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    status = {Path(e["input"]).name: e for e in summary["inputs"]}
    assert [status[n]["status"] for n in ("a_nan.nii.gz", "b_good.nii.gz", "c_text.nii")] == ["failed", "ok", "failed"]
    for name in ("a_nan.nii.gz", "c_text.nii"):
        assert name in status[name]["error"] and "\n" not in status[name]["error"]
    assert not (tmp_path / "o" / "a_nan_seg.nii.gz").exists() and not (tmp_path / "o" / "c_text_seg.json").exists()


def test_output_naming_the_input_is_refused_and_the_input_is_unchanged(ckpt, tmp_path, cli, monkeypatch):
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 8), np.int16), np.eye(4)), tmp_path / "ph.nii.gz")
    before = (tmp_path / "ph.nii.gz").read_bytes()
    monkeypatch.chdir(tmp_path)
    res = cli("run", "medical", "--input", "ph.nii.gz", "--output", "ph.nii.gz", "--model", ckpt, "--device", "cpu")
    assert_one_line_error(res, "ph.nii.gz", "would overwrite the input")
    assert (tmp_path / "ph.nii.gz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph.nii.gz"]  # nothing written beside it either


def test_one_input_with_an_output_file_name(ckpt, tmp_path, cli):
    nib.save(nib.Nifti1Image(np.random.default_rng(8).normal(0, 200, (10, 10, 8)).astype(np.int16),
                             np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "ct.nii.gz")
    res = cli("run", "medical", "--input", tmp_path / "ct.nii.gz", "--output", tmp_path / "res" / "liver.nii.gz",
              "--model", ckpt, "--probabilities", "--uncertainty", "entropy", "--device", "cpu")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "res").iterdir() if not p.name.startswith("."))
    assert names == ["liver.json", "liver.nii.gz", "liver_probabilities.nii.gz", "liver_uncertainty.nii.gz",
                     "summary.csv", "summary.json"]
    assert json.loads((tmp_path / "res" / "liver.json").read_text())["outputs"]["labels"] == str(tmp_path / "res" / "liver.nii.gz")


def test_same_case_name_as_nii_and_nii_gz_gives_two_label_volumes(ckpt, tmp_path, cli):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(6)
    nib.save(nib.Nifti1Image(rng.normal(0, 200, (12, 10, 8)).astype(np.int16), np.eye(4)), folder / "case.nii")
    nib.save(nib.Nifti1Image(rng.normal(0, 200, (9, 11, 7)).astype(np.int16), np.diag([2.0, 1.0, 1.5, 1.0])),
             folder / "case.nii.gz")
    res = cli("run", "medical", "--input", folder, "--model", ckpt, "--output", tmp_path / "o", "--device", "cpu",
              "--report", tmp_path / "report")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    labels = {Path(e["input"]).name: Path(e["outputs"]["labels"]) for e in summary["inputs"] if e["status"] == "ok"}
    assert set(labels) == {"case.nii", "case.nii.gz"} and labels["case.nii"] != labels["case.nii.gz"]
    # each label volume is on its own input's grid: neither overwrote the other
    assert nib.load(labels["case.nii"]).shape == (12, 10, 8) and nib.load(labels["case.nii.gz"]).shape == (9, 11, 7)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Volumes per structure" in html and labels["case.nii"].name in html and labels["case.nii.gz"].name in html
    assert len(list((tmp_path / "report").glob("*_overlay.png"))) == 2


# -- shipped sample data and default model -------------------------------------------------------

def test_run_medical_on_the_sample_with_no_other_argument(segsuite_proc, tmp_path):
    from conftest import ROOT

    sample = ROOT / "sample_data" / "medical" / "imagesTr" / "phantom_007_000.nii.gz"
    proc = segsuite_proc("run", "medical", "--input", sample, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seg = nib.load(tmp_path / "segsuite-run" / "phantom_007_000_seg.nii.gz")
    ref = nib.load(ROOT / "sample_data" / "medical" / "labelsTr" / "phantom_007_000.nii.gz")
    np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-5)
    pred, truth = np.asarray(seg.dataobj), np.asarray(ref.dataobj)
    liver = 2 * ((pred == 1) & (truth == 1)).sum() / ((pred == 1).sum() + (truth == 1).sum())
    assert liver > 0.9


def test_the_demo_sample_is_the_shipped_phantoms():
    """The demo note counts the sample cases; they are the inputs and the labelled MSD data of the sample."""
    from conftest import ROOT
    from segsuite.core.pipeline import Evaluates, Explains

    dom = load_plugins(entry_points=False).domain("medical")
    assert isinstance(dom.pipeline, Evaluates) and isinstance(dom.pipeline, Explains)
    root = ROOT / "sample_data" / "medical"
    cases = [p for p in (root / dom.sample.inputs[0]).iterdir() if p.name.endswith(".nii.gz")]
    assert f"on {len(cases)} synthetic CT-like phantoms" in dom.sample.note
    assert (root / dom.sample.labels / "dataset.json").is_file()
    fmt = dom.dataset_formats["msd"]
    assert fmt.detect(root) and [p.image.name for p in fmt.list_pairs(root)] == sorted(p.name for p in cases)


def test_default_model_reaches_dice_on_fresh_phantoms(tmp_path):
    """Phantoms from a seed the model never saw, in random orientations and spacings."""
    from conftest import ROOT
    from segsuite.plugins.medical.evaluate import evaluate_volumes
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    data = make_phantom_dataset(tmp_path / "fresh", n=3, seed=99)
    result = evaluate_volumes(ROOT / "sample_data" / "medical" / "model.safetensors", data, None, device="cpu")
    for organ in ("liver", "spleen", "kidney"):
        assert result["classes"][organ]["dice"] >= 0.90, (organ, result["classes"][organ])
    assert result["mean_dice"] >= 0.90, result["classes"]


def test_explain_medical_concentrates_on_the_class(segsuite_proc, tmp_path):
    from conftest import ROOT

    sample = ROOT / "sample_data" / "medical" / "imagesTr" / "phantom_007_000.nii.gz"
    proc = segsuite_proc("explain", "medical", "--input", sample, "--class", "kidney", "--output", tmp_path / "x")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "x" / "phantom_007_000_kidney_cam.json").read_text())
    cam = nib.load(tmp_path / "x" / "phantom_007_000_kidney_cam.nii.gz")
    assert cam.shape == nib.load(sample).shape
    assert info["region"] == "predicted"
    # the kidneys fill under 2 % of the volume; the map's mass on them is many times that share
    assert info["predicted_share_of_volume"] < 0.02
    assert info["share_in_predicted_region"] > 10 * info["predicted_share_of_volume"]


def test_split_groups_cases_and_training_reads_the_manifests(cli, tmp_path):
    import csv

    from segsuite.plugins.medical.dataset import scan_cases
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    data = make_phantom_dataset(tmp_path / "msd", n=4, seed=9)
    for p in list((data / "imagesTr").iterdir()) + list((data / "labelsTr").iterdir()):  # two scans per patient
        case = p.name.split(".")[0]
        p.rename(p.with_name(f"pat{int(case[-1]) // 2}_{case}.nii.gz"))
    (data / "dataset.json").unlink()  # plain folders now
    (data / "imagesTr").rename(data / "images")
    (data / "labelsTr").rename(data / "labels")
    res = cli("split", data, "--output", tmp_path / "splits", "--ratios", "0.5,0.5,0", "--group-by", r"^(pat\d+)_")
    assert res.exit_code == 0, res.output
    rows = {name: list(csv.DictReader((tmp_path / "splits" / f"{name}.csv").open())) for name in ("train", "val")}
    assert len(rows["train"]) == 2 and len(rows["val"]) == 2
    assert len({r["group"] for r in rows["train"]}) == 1 and {r["group"] for r in rows["train"]}.isdisjoint(
        {r["group"] for r in rows["val"]})
    cases = scan_cases(tmp_path / "splits" / "train.csv")
    assert len(cases) == 2 and all(c.label.is_file() for c in cases)
    res = _tiny_train(cli, tmp_path / "splits" / "train.csv", tmp_path / "run", "--val", tmp_path / "splits" / "val.csv")
    assert res.exit_code == 0, res.output


def test_uncertainty_is_higher_on_an_ambiguous_volume():
    """The same phantom, clear and with heavy noise: the default model is less sure of the noisy one."""
    from conftest import ROOT
    from segsuite.plugins.medical.run import VolumeModel
    from segsuite.plugins.medical.synthetic import FOV_MM, random_affine, render_phantom

    model = VolumeModel.load(ROOT / "sample_data" / "medical" / "model.safetensors", "cpu")
    affine, shape = random_affine(np.random.default_rng(1), FOV_MM, axcodes="LPS")
    clear, truth = render_phantom(np.random.default_rng(11), affine, shape)
    noisy = clear + np.random.default_rng(2).normal(0, 120, clear.shape)
    organs = truth > 0
    means = []
    for image in (clear, noisy):
        labels, _, unc = model.predict(image[None].astype(np.float32), affine, uncertainty="entropy")
        assert unc.shape == shape and 0 <= unc.min() and unc.max() <= 1
        means.append(float(unc[organs].mean()))
    assert means[1] > 2 * means[0], means


def test_2d_slice_mode_trains_runs_and_evaluates(cli, tmp_path):
    """A 2D patch size trains a 2D network on axial slices; run and evaluate segment slice by slice."""
    from segsuite.core.checkpoint import read_card
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    data = make_phantom_dataset(tmp_path / "msd", n=2, seed=12)
    res = cli("train", "medical", "--data", data, "--val", data, "--epochs", "1", "--batch-size", "4",
              "--patch-size", "48,48", "--model-option", "channels=[4,8]",
              "--device", "cpu", "--output", tmp_path / "run")
    assert res.exit_code == 0, res.output
    ckpt = tmp_path / "run" / "best.safetensors"
    card = read_card(ckpt)
    assert card.model["spatial_dims"] == 2 and card.patch_size == [48, 48]
    assert card.normalization["mirror_axes"] == [0, 1]
    image = next((data / "imagesTr").iterdir())
    res = cli("run", "medical", "--input", image, "--model", ckpt, "--output", tmp_path / "out", "--tta",
              "--uncertainty", "entropy", "--device", "cpu")
    assert res.exit_code == 0, res.output
    seg = nib.load(tmp_path / "out" / image.name.replace(".nii.gz", "_seg.nii.gz"))
    src = nib.load(image)
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-5)
    assert nib.load(tmp_path / "out" / image.name.replace(".nii.gz", "_uncertainty.nii.gz")).shape == src.shape
    res = cli("evaluate", "medical", "--model", ckpt, "--data", data, "--output", tmp_path / "ev", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["cases"] == 2
