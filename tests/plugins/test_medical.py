"""Medical plugin: label volumes keep the input geometry voxel for voxel; volume reports; bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins
from segsuite.plugins.medical.classes import LIVER


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resunet", 1, 3, spatial_dims=3, registry=load_plugins(entry_points=False), channels=[4, 8],
                        num_res_units=0)
    card = ModelCard(model=model.card(), class_map=LIVER.to_dict(), domain="medical", patch_size=[16, 16, 16],
                     normalization={"kind": "zscore", "mean": [0.0], "std": [100.0]})
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
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())  # nothing half-written


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
    from segsuite.core.data.images import write_image

    write_image(tmp_path / "part.png", np.zeros((8, 8), np.uint8))
    assert_one_line_error(cli("run", "industrial", "--input", tmp_path / "part.png", "--keep-largest"),
                          "the industrial domain does not use --keep-largest")
