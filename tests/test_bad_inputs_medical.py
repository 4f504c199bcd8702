"""Bad NIfTI input through the real CLI (issue #13, medical part): one line for every user error, no
result computed from bad data, formats kept, and huge headers refused from the header alone.

The bad files are made here with nibabel; what nibabel refuses to write (a NaN sform, a zero or
negative pixdim, a header that lies about its shape) is patched into the header bytes.
"""

from __future__ import annotations

import gzip
import json
import re
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

JOB_FILES = [".segsuite-outputs.json", "segsuite.log", "summary.csv", "summary.json"]


def _model(path: Path, *, liver_everywhere: bool = False, classes=LIVER) -> Path:
    torch.manual_seed(0)
    model = build_model("resunet", 1, classes.num_classes, spatial_dims=3, registry=load_plugins(entry_points=False), channels=[4, 8],
                        num_res_units=0)
    if liver_everywhere:  # the output layer answers "liver" whatever it sees
        with torch.no_grad():
            model.net.model[2].conv.weight.zero_()
            model.net.model[2].conv.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    prep = Preprocessing(spacing=(1.5, 1.5, 2.0), intensity="ct_window")
    card = ModelCard(model=model.card(), class_map=classes.to_dict(), domain="medical", patch_size=[16, 16, 16],
                     normalization=prep.to_dict())
    return save_checkpoint(path, model, card)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("m") / "ct.safetensors")


@pytest.fixture(scope="module")
def abdomen_ckpt(tmp_path_factory):  # the phantoms' classes
    return _model(tmp_path_factory.mktemp("m") / "abdomen.safetensors", classes=ABDOMEN)


@pytest.fixture(scope="module")
def liver_ckpt(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("m") / "liver.safetensors", liver_everywhere=True)


def _ct(shape=(12, 12, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 200, shape).astype(np.int16)


def _save(img, path: Path, **raw_fields) -> Path:
    """Save ``img``, then set header fields in the stored bytes (nibabel would fix or refuse them on save)."""
    raw = bytearray(img.to_bytes())
    header = np.ndarray((), dtype=type(img.header).template_dtype, buffer=raw)
    for key, value in raw_fields.items():
        header[key] = value
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


def _run(cli, inputs, out: Path, model: Path, *extra):
    return cli("run", "medical", "--input", inputs, "--model", model, "--output", out, "--device", "cpu", *extra)


def _refused_alone(res, out: Path, *fragments: str) -> None:
    """One error line naming the problem, and only the job's own files in the output folder."""
    assert_one_line_error(res, *fragments)
    assert sorted(p.name for p in out.iterdir()) == JOB_FILES
    entry = json.loads((out / "summary.json").read_text())["inputs"][0]
    assert entry["status"] == "failed" and "\n" not in entry["error"]


def _nan_voxel(path):
    data = _ct().astype(np.float32)
    data[3, 4, 5] = np.nan
    return _save(nib.Nifti1Image(data, np.eye(4)), path)


def _scaled_to_inf(path):  # finite int16 on disk, but the scale factor overflows float32
    img = nib.Nifti1Image(_ct(), np.eye(4))
    return _save(img, path, scl_slope=1e38, scl_inter=0)


def _constant(value):
    return lambda path: _save(nib.Nifti1Image(np.full((12, 12, 8), value, np.int16), np.eye(4)), path)


def _air_only(path):  # varies, but every voxel is below the model's CT window [-250, 350]
    data = np.random.default_rng(1).uniform(-1000, -300, (12, 12, 8)).astype(np.int16)
    return _save(nib.Nifti1Image(data, np.eye(4)), path)


def _pixdim(axis, value):
    def make(path):
        img = nib.Nifti1Image(_ct(), None)
        pixdim = np.array([1, 1, 1, 1, 1, 1, 1, 1], np.float32)
        pixdim[axis + 1] = value
        return _save(img, path, pixdim=pixdim, qform_code=0, sform_code=0)
    return make


def _complex(path):
    rng = np.random.default_rng(2)
    data = (rng.normal(size=(12, 12, 8)) + 1j * rng.normal(size=(12, 12, 8))).astype(np.complex64)
    return _save(nib.Nifti1Image(data, np.eye(4)), path)


def _rgb(path):
    data = np.zeros((12, 12, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    data["R"] = np.random.default_rng(3).integers(0, 255, (12, 12, 8))
    return _save(nib.Nifti1Image(data, np.eye(4)), path)


def _broken_sform(value, qform_code):
    def make(path):
        affine = np.diag([2.0, 2.0, 3.0, 1.0])
        img = nib.Nifti1Image(_ct(), affine)
        img.set_qform(affine, code=1)
        srow = np.full(4, value, np.float32)
        return _save(img, path, srow_x=srow, srow_y=srow, srow_z=srow, sform_code=1, qform_code=qform_code)
    return make


def _huge_header(path):  # a few hundred bytes whose header claims 2000^3 int16 voxels (15 GB)
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    return _save(img, path, dim=[3, 2000, 2000, 2000, 1, 1, 1, 1])


BAD = [
    ("nan.nii.gz", _nan_voxel, ["nan.nii.gz: 1 voxels are NaN or infinite"]),
    ("overflow.nii.gz", _scaled_to_inf, ["overflow.nii.gz", "voxels are NaN or infinite"]),
    ("zeros.nii.gz", _constant(0), ["zeros.nii.gz: no intensity variation", "every voxel is 0"]),
    ("flat.nii", _constant(40), ["flat.nii: no intensity variation", "every voxel is 40"]),
    ("air.nii.gz", _air_only, ["air.nii.gz: no intensity variation within the model's CT window", "below"]),
    ("pixdim0.nii.gz", _pixdim(1, 0.0), ["pixdim0.nii.gz", "axis 1", "pixdim[2]", "is zero"]),
    ("pixdimneg.nii.gz", _pixdim(2, -2.0), ["pixdimneg.nii.gz", "axis 2", "pixdim[3]", "negative"]),
    ("pixdimnan.nii.gz", _pixdim(0, np.nan), ["pixdimnan.nii.gz", "axis 0", "pixdim[1]", "not a number"]),
    ("complex.nii.gz", _complex, ["complex.nii.gz", "complex", "take the magnitude first"]),
    ("rgb.nii.gz", _rgb, ["rgb.nii.gz", "RGB", "grey"]),
    ("sform0.nii.gz", _broken_sform(0.0, 0), ["sform0.nii.gz", "singular (all zeros) in the sform", "qform is not set",
                                              "no usable geometry"]),
    ("sformnan.nii.gz", _broken_sform(np.nan, 0), ["sformnan.nii.gz", "not finite in the sform", "qform is not set"]),
    ("huge.nii.gz", _huge_header, ["huge.nii.gz", "2000x2000x2000 int16", "a gzip file of", "cannot hold"]),
    ("huge.nii", _huge_header, ["huge.nii", "2000x2000x2000 int16", "but the file has", "truncated or its header is wrong"]),
]


@pytest.mark.parametrize("name,make,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_volume_is_one_line_and_leaves_nothing(cli, tmp_path, liver_ckpt, name, make, fragments):
    # the liver-everywhere model labels any input that gets through: nothing may be reported for these
    path = make(tmp_path / name)
    res = _run(cli, path, tmp_path / "out", liver_ckpt)
    _refused_alone(res, tmp_path / "out", *fragments)
    assert "mL" not in res.stdout


def test_huge_header_is_refused_from_the_header_in_well_under_a_second(cli, tmp_path, ckpt):
    from segsuite.plugins.medical.io import read_nifti

    for name in ("huge.nii.gz", "huge.nii"):
        path = _huge_header(tmp_path / name)
        assert path.stat().st_size < 2000
        res = _run(cli, path, tmp_path / name.replace(".", "_"), ckpt)
        assert_one_line_error(res, name)
        entry = json.loads((tmp_path / name.replace(".", "_") / "summary.json").read_text())["inputs"][0]
        assert entry["status"] == "failed" and entry["seconds"] < 1.0
        import time

        t0 = time.perf_counter()
        with pytest.raises(OSError, match="cannot hold|but the file has"):
            read_nifti(path)
        assert time.perf_counter() - t0 < 1.0


def test_a_volume_larger_than_the_memory_left_is_refused_before_reading(cli, tmp_path, ckpt, monkeypatch):
    from segsuite.plugins.medical import memory

    # a consistent file (header and size agree: a sparse file of 1 GB of int16) on a machine with 1 GB free
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    header = np.ndarray((), dtype=nib.Nifti1Header.template_dtype, buffer=raw)
    header["dim"] = [3, 1024, 1024, 512, 1, 1, 1, 1]
    path = tmp_path / "big.nii"
    with path.open("wb") as fh:
        fh.write(bytes(raw[:352]))
        fh.truncate(352 + 1024 * 1024 * 512 * 2)
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 30)
    res = _run(cli, path, tmp_path / "out", ckpt)
    _refused_alone(res, tmp_path / "out", "big.nii: segmenting its 1024x1024x512 voxels needs about", "1.0 GB is available",
                   "crop or downsample")
    entry = json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"][0]
    assert entry["seconds"] < 1.0
    needed = float(re.search(r"needs about ([\d.]+) GB", res.stderr).group(1))
    assert 1.0 * 3 <= needed < 10  # int16 as read + float32 copy + reoriented copy, at least


def test_available_memory_is_what_the_system_reports():
    from segsuite.plugins.medical.memory import available_memory

    free = available_memory()
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo here")
    total = int(next(ln for ln in meminfo.read_text().splitlines() if ln.startswith("MemTotal:")).split()[1]) * 1024
    assert free is not None and 0 < free <= total


def test_in_a_batch_the_bad_volumes_fail_and_the_good_ones_are_done(cli, tmp_path, ckpt):
    folder = tmp_path / "in"
    folder.mkdir()
    nib.save(nib.Nifti1Image(_ct(seed=4), np.eye(4)), folder / "a_good.nii.gz")
    _nan_voxel(folder / "b_nan.nii.gz")
    _constant(0)(folder / "c_zeros.nii.gz")
    _huge_header(folder / "d_huge.nii.gz")
    _pixdim(1, 0.0)(folder / "e_pixdim.nii.gz")
    nib.save(nib.Nifti1Image(_ct(seed=5), np.diag([2.0, 1.0, 1.5, 1.0])), folder / "f_good.nii")
    res = _run(cli, folder, tmp_path / "out", ckpt)
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 5 and "4 of 6 failed" in errors[-1]
    summary = {Path(e["input"]).name: e for e in json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"]}
    assert {n: e["status"] for n, e in summary.items()} == {
        "a_good.nii.gz": "ok", "b_nan.nii.gz": "failed", "c_zeros.nii.gz": "failed", "d_huge.nii.gz": "failed",
        "e_pixdim.nii.gz": "failed", "f_good.nii": "ok"}
    for name, entry in summary.items():
        if entry["status"] == "failed":
            assert name in entry["error"] and "\n" not in entry["error"] and "a bug" not in entry["error"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*_seg.nii.gz")) == ["a_good_seg.nii.gz", "f_good_seg.nii.gz"]


def test_a_broken_sform_falls_back_to_a_valid_qform_with_a_warning(cli, tmp_path, ckpt):
    path = _broken_sform(np.nan, 1)(tmp_path / "nansform.nii.gz")
    res = _run(cli, path, tmp_path / "out", ckpt, "--report", tmp_path / "report")
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: warning:")]
    assert len(warnings) == 1 and "nansform.nii.gz: the sform" in warnings[0] and "using the qform (code 1)" in warnings[0]
    assert [ln for ln in res.stderr.splitlines() if ln.strip() and ln not in warnings] == []
    seg = nib.load(tmp_path / "out" / "nansform_seg.nii.gz")
    source = nib.load(path)
    assert int(seg.header["sform_code"]) == 0 and int(seg.header["qform_code"]) == 1
    np.testing.assert_array_equal(seg.header.get_qform(), source.header.get_qform())
    np.testing.assert_allclose(seg.affine, np.diag([2.0, 2.0, 3.0, 1.0]))
    assert (tmp_path / "report" / "index.html").is_file()


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(17.3)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7123456789, 0.8123456789, 2.5123456789])
    affine[:3, 3] = [-90.123456789, 40.987654321, -30.55555555]
    return affine


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_outputs_keep_the_input_nifti_version_and_its_exact_qform_and_sform(cli, tmp_path, ckpt, klass):
    affine = _oblique_affine()
    img = klass(_ct((14, 12, 9), seed=6), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine @ np.diag([1.0, 1.0, 1.0001, 1.0]), code=2)  # not the qform, so both must be copied
    nib.save(img, tmp_path / "case.nii.gz")
    source = nib.load(tmp_path / "case.nii.gz")
    res = _run(cli, tmp_path / "case.nii.gz", tmp_path / "out", ckpt, "--probabilities", "--uncertainty", "entropy")
    assert res.exit_code == 0, res.output
    for name in ("case_seg.nii.gz", "case_probabilities.nii.gz", "case_uncertainty.nii.gz"):
        out = nib.load(tmp_path / "out" / name)
        assert type(out) is type(source) and type(out.header) is type(source.header), name
        for key in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                    "qoffset_z", "srow_x", "srow_y", "srow_z"):
            np.testing.assert_array_equal(out.header[key], source.header[key], err_msg=f"{name} {key}")
        np.testing.assert_array_equal(out.header["pixdim"][:4], source.header["pixdim"][:4])
        np.testing.assert_array_equal(out.header.get_qform(), source.header.get_qform())
        np.testing.assert_array_equal(out.affine, source.affine)
    assert nib.load(tmp_path / "out" / "case_probabilities.nii.gz").shape == (14, 12, 9, 3)


def test_nibabel_header_fixes_become_one_segsuite_warning(segsuite_proc, tmp_path, ckpt):
    # an invalid qform code: nibabel drops the qform and prints its own line (three times, once per load);
    # we say it once, as ours, and the report's reading of the same file says nothing more
    img = nib.Nifti1Image(_ct(), np.diag([2.0, 2.0, 3.0, 1.0]))
    img.set_qform(img.affine, code=1)
    path = _save(img, tmp_path / "qcode.nii.gz", qform_code=7)
    proc = segsuite_proc("run", "medical", "--input", path, "--model", ckpt, "--output", tmp_path / "out",
                         "--device", "cpu", "--report", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("segsuite: warning: qcode.nii.gz") or lines[0].startswith(f"segsuite: warning: {path}")
    assert "qform_code 7 not valid" in lines[0]


def test_small_volumes_print_with_their_digits(cli, tmp_path, liver_ckpt):
    # 0.2 mm voxels: the whole 12x12x8 volume (all liver for this model) is 0.0092 mL
    nib.save(nib.Nifti1Image(_ct(), np.diag([0.2, 0.2, 0.2, 1.0])), tmp_path / "tiny.nii.gz")
    res = _run(cli, tmp_path / "tiny.nii.gz", tmp_path / "out", liver_ckpt)
    assert res.exit_code == 0, res.output
    volume = json.loads((tmp_path / "out" / "tiny_seg.json").read_text())["classes"]["liver"]["volume_ml"]
    assert volume == pytest.approx(12 * 12 * 8 * 0.008 / 1000)
    shown = re.search(r"liver (\S+) mL \(1 part", res.stdout)
    assert shown is not None, res.stdout
    assert float(shown.group(1)) == pytest.approx(volume, rel=0.05) and "liver 0.0 mL" not in res.stdout
    assert "tumour 0 mL (0 part(s))" in res.stdout


def test_format_ml():
    from segsuite.plugins.medical.pipeline import format_ml

    assert [format_ml(v) for v in (0, 0.05, 0.0004567, 0.95, 1.0, 819.26)] == \
        ["0 mL", "0.05 mL", "0.00046 mL", "0.95 mL", "1.0 mL", "819.3 mL"]


# -- evaluate and train read the same way ---------------------------------------------------------

def _phantoms(tmp_path, name, n=1, seed=9):
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path / name, n=n, seed=seed)


def _blank_first_image(data: Path) -> Path:
    image = sorted((data / "imagesTr").iterdir())[0]
    src = nib.load(image)
    nib.save(nib.Nifti1Image(np.zeros(src.shape, np.int16), src.affine), image)
    return image


def test_evaluate_refuses_a_blank_case(cli, tmp_path, abdomen_ckpt):
    data = _phantoms(tmp_path, "ev", n=2)
    image = _blank_first_image(data)
    res = cli("evaluate", "medical", "--model", abdomen_ckpt, "--data", data, "--output", tmp_path / "ev_out",
              "--device", "cpu")
    assert_one_line_error(res, image.name, "no intensity variation")
    assert not (tmp_path / "ev_out" / "metrics.json").exists()


def test_evaluate_refuses_a_case_outside_the_ct_window(cli, tmp_path, abdomen_ckpt):
    data = _phantoms(tmp_path, "air", n=1)
    image = sorted((data / "imagesTr").iterdir())[0]
    src = nib.load(image)
    nib.save(nib.Nifti1Image(np.full(src.shape, -1000, np.int16) + (np.arange(src.shape[0]) % 3)[:, None, None].astype(np.int16),
                             src.affine), image)
    res = cli("evaluate", "medical", "--model", abdomen_ckpt, "--data", data, "--device", "cpu")
    assert_one_line_error(res, image.name, "within the model's CT window")


@pytest.mark.parametrize("break_case", ["blank", "pixdim"])
def test_train_refuses_a_bad_case(cli, tmp_path, break_case):
    data = _phantoms(tmp_path, "tr", n=2)
    if break_case == "blank":
        image, fragment = _blank_first_image(data), "no intensity variation"
    else:
        image = sorted((data / "labelsTr").iterdir())[0]  # the label file's header this time
        pixdim = nib.load(image).header["pixdim"].copy()
        pixdim[3] = 0
        _save(nib.load(image), image, pixdim=pixdim)
        fragment = "pixdim[3]"
    res = cli("train", "medical", "--data", data, "--epochs", "1", "--batch-size", "2", "--patch-size", "32,32,32",
              "--model-option", "channels=[4,8]", "--device", "cpu",
              "--output", tmp_path / "run")
    assert_one_line_error(res, image.name, fragment)
    assert not list((tmp_path / "run").glob("*.safetensors")) if (tmp_path / "run").exists() else True


def test_memory_planning_sees_the_grid_the_run_uses():
    """The model-grid shape planned from the header is the one ``to_model_grid`` makes from the voxels."""
    from segsuite.plugins.medical.preprocess import grid_shapes, to_model_grid

    prep = Preprocessing(spacing=(1.5, 1.5, 2.0))
    permuted = np.array([[0, 0, 2.5, 0], [-0.8, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 0, 1.0]])  # stored as S, L, A
    for affine in (_oblique_affine(), permuted, np.diag([0.5, 1.0, 5.0, 1.0])):
        volume = np.random.default_rng(0).normal(size=(1, 21, 18, 11)).astype(np.float32)
        canon, model = grid_shapes((21, 18, 11), affine, prep)
        x, _, grid = to_model_grid(volume.copy(), affine, prep)
        assert tuple(x.shape[1:]) == model and grid.canonical_shape == canon


@pytest.mark.parametrize("size", [1e30, 1e-30])
def test_absurd_voxel_sizes_are_refused(cli, tmp_path, size):
    import nibabel as nib

    data = np.random.default_rng(0).normal(size=(16, 16, 8)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([size, 1.0, 1.0, 1.0]))
    img.header.set_zooms((size, 1.0, 1.0))
    nib.save(img, tmp_path / "odd.nii.gz")
    res = cli("run", "medical", "--input", tmp_path / "odd.nii.gz", "--output", tmp_path / "out", "--device", "cpu")
    assert_one_line_error(res, "odd.nii.gz", "outside any scanner's")
