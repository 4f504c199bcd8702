"""`segsuite run medical` on DICOM series: the same labels as from the NIfTI of the same image, a DICOM SEG
that highdicom and pydicom read back onto the source slices, and bad series failing alone (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from conftest import ROOT, assert_one_line_error
from segsuite.plugins.medical.dicom import scan_files
from segsuite.plugins.medical.dicom_synthetic import dicom_geometry, phantom_volume, write_series
from test_dicom import ORIENTATIONS, series_of, to_reference_order

MODEL = ROOT / "sample_data" / "medical" / "model.safetensors"


def write_nifti(path: Path, image: np.ndarray, affine: np.ndarray) -> Path:
    """NIfTI-2: its float64 matrix keeps the grid as exactly as the DICOM decimal strings do."""
    img = nib.Nifti2Image(image, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def run(cli, *args):
    return cli("run", "medical", "--model", MODEL, "--device", "cpu", *args)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_dicom_labels_equal_nifti_labels_and_the_seg_reads_back_onto_the_source_slices(cli, tmp_path, name):
    codes, tilt = ORIENTATIONS[name]
    image, _labels, affine = phantom_volume(21, codes, tilt)
    write_series(tmp_path / "in" / "series", image, affine, seed=21, description=f"phantom {name}")
    write_nifti(tmp_path / "in" / "volume.nii.gz", image, affine)
    res = run(cli, "--input", tmp_path / "in", "--format", "both", "--output", tmp_path / "out")
    assert res.exit_code == 0, res.output
    stem = f"phantom_{name}"
    from_dicom = nib.load(tmp_path / "out" / f"{stem}_seg.nii.gz")
    from_nifti = nib.load(tmp_path / "out" / "volume_seg.nii.gz")
    labels = np.asarray(from_dicom.dataobj)
    assert (labels > 0).sum() > 1000  # the phantom's organs were found: the comparison is not of empty volumes
    np.testing.assert_array_equal(to_reference_order(labels, from_dicom.affine, from_nifti.affine),
                                  np.asarray(from_nifti.dataobj))
    record = json.loads((tmp_path / "out" / f"{stem}_seg.json").read_text())
    assert record["classes"] == json.loads((tmp_path / "out" / "volume_seg.json").read_text())["classes"]

    series = series_of(tmp_path / "in" / "series")
    np.testing.assert_allclose(from_dicom.affine, series.affine, atol=1e-5)
    seg_path = tmp_path / "out" / f"{stem}_seg.dcm"
    seg = hd.seg.segread(seg_path)
    by_uid = {str(h.SOPInstanceUID): h for h in series.headers}
    # every frame names a source slice and sits at that slice's position
    assert 0 < seg.NumberOfFrames < 4 * len(series.files)  # empty frames were left out
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, [float(v) for v in by_uid[uid].ImagePositionPatient], atol=1e-6)
    # the label volume, slice for slice, back from the SEG
    uids = [str(h.SOPInstanceUID) for h in series.headers]
    back = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True, relabel=False)
    np.testing.assert_array_equal(back, labels.transpose(2, 1, 0))
    # what a viewer reads with pydicom: the study, frame of reference and series it belongs to
    ds = pydicom.dcmread(seg_path)
    first = series.headers[0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == first.StudyInstanceUID and ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    (ref,) = ds.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == first.SeriesInstanceUID
    assert {str(i.ReferencedSOPInstanceUID) for i in ref.ReferencedInstanceSequence} == set(uids)
    segments = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    assert [segments[n].SegmentLabel for n in sorted(segments)] == ["liver", "spleen", "kidney", "lesion"]
    assert segments[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT liver
    assert segments[4].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
    algorithm = segments[1].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "bnunet model.safetensors" and algorithm.AlgorithmVersion
    assert ds.Manufacturer == "segsuite" and record["dicom_seg"]["referenced_series"] == first.SeriesInstanceUID


def _bad_series(root: Path) -> dict[str, str]:
    """Good and bad series side by side in one folder tree; returns {series folder: what is wrong}."""
    bad = {}
    for number, (folder, seed) in enumerate((("good-a", 31), ("good-b", 32)), start=1):
        image, _l, affine = phantom_volume(seed, "LPS")
        write_series(root / folder, image, affine, seed=seed, series_number=number, description=folder)
    image, _l, affine = phantom_volume(33, "LPS")
    positions = [[float(v) for v in p] for p in dicom_geometry(affine, image.shape)["positions"]]
    gap = [list(p) for p in positions]
    for p in gap[8:]:
        p[2] += 2.0
    write_series(root / "gap", image, affine, seed=33, series_number=3, description="gap", positions=gap)
    bad["gap"] = "non-uniform slice spacing"
    tilt = [[p[0], p[1] + k * 1.5, p[2]] for k, p in enumerate(positions)]
    write_series(root / "tilt", image, affine, seed=33, series_number=4, description="tilt", positions=tilt)
    bad["tilt"] = "gantry tilt"
    files = write_series(root / "sizes", image, affine, seed=33, series_number=5, description="sizes", shuffle=False)
    ds = pydicom.dcmread(files[3])
    ds.Rows = ds.Rows - 2
    ds.PixelData = ds.PixelData[: ds.Rows * ds.Columns * 2]
    ds.save_as(files[3])
    bad["sizes"] = "mixed image rows"
    files = write_series(root / "cut", image, affine, seed=33, series_number=6, description="cut", shuffle=False)
    files[5].write_bytes(files[5].read_bytes()[:-500])
    bad["cut"] = "truncated"
    (root / "good-a" / "README.bin").write_bytes(b"not an image\n" * 20)
    bad["README.bin"] = "neither NIfTI"
    return bad


@pytest.mark.slow
def test_bad_series_fail_alone_and_the_others_are_segmented(cli, tmp_path):
    bad = _bad_series(tmp_path / "in")
    res = run(cli, "--input", tmp_path / "in", "--format", "dicom-seg", "--output", tmp_path / "out")
    assert res.exit_code == 2, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "failed": 5, "skipped": 0, "not run": 0}
    failed = {r["input"]: r["error"] for r in summary["inputs"] if r["status"] == "failed"}
    for where, problem in bad.items():
        (error,) = [e for src, e in failed.items() if f"/{where}/" in src + "/" or src.endswith(where)]
        assert problem in error and "\n" not in error
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 6 and errors[-1] == f"segsuite: error: 5 of 7 failed; see {tmp_path / 'out' / 'summary.json'}"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.dcm")) == ["good-a_seg.dcm", "good-b_seg.dcm"]
    assert not list((tmp_path / "out").glob("*.nii.gz"))  # dicom-seg only


def test_nifti_input_with_dicom_seg_is_one_line(cli, tmp_path):
    image, _l, affine = phantom_volume(41, "LPS")
    write_nifti(tmp_path / "v.nii.gz", image, affine)
    res = run(cli, "--input", tmp_path / "v.nii.gz", "--format", "dicom-seg", "--output", tmp_path / "out")
    assert_one_line_error(res, "v.nii.gz", "this input is NIfTI", "--format nifti")


def test_non_image_objects_are_skipped_with_a_note_and_a_single_file_stands_for_its_series(cli, tmp_path):
    image, _l, affine = phantom_volume(42, "LPS")
    files = write_series(tmp_path / "in", image, affine, seed=42, description="one")
    res = run(cli, "--input", tmp_path / "in", "--format", "dicom-seg", "--output", tmp_path / "first")
    assert res.exit_code == 0, res.output
    (seg,) = (tmp_path / "first").glob("*.dcm")
    (tmp_path / "in" / "old_seg.dcm").write_bytes(seg.read_bytes())  # a SEG among the slices: not an image
    res = run(cli, "--input", files[0], "--output", tmp_path / "second")
    assert res.exit_code == 0, res.output
    assert "segsuite: warning:" in res.stderr and "1 x a Segmentation" in res.stderr
    record = json.loads((tmp_path / "second" / "one_seg.json").read_text())
    assert record["dicom"]["slices"] == len(files) and record["input"].endswith(record["dicom"]["uid"])


def test_series_sharing_a_description_get_distinct_names_and_resume(cli, tmp_path):
    for number, seed in ((1, 43), (2, 44)):
        image, _l, affine = phantom_volume(seed, "LPS")
        write_series(tmp_path / "in", image, affine, seed=seed, series_number=number, description="CT")
    res = run(cli, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "out").glob("*_seg.nii.gz"))
    uids = sorted(s.uid for s in scan_files(sorted((tmp_path / "in").iterdir())).series)
    assert len(names) == 2 and "CT_seg.nii.gz" in names and any(n.startswith(tuple(uids)) for n in names)
    again = run(cli, "--input", tmp_path / "in", "--output", tmp_path / "out", "--skip-existing")
    assert again.exit_code == 0 and "skipping 2 input(s)" in again.output


def test_output_file_name_for_one_series(cli, tmp_path):
    image, _l, affine = phantom_volume(45, "LPS")
    write_series(tmp_path / "in", image, affine, seed=45)
    res = run(cli, "--input", tmp_path / "in", "--format", "dicom-seg", "--output", tmp_path / "o" / "result.dcm")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")) == \
        ["result.dcm", "result.json", "summary.csv", "summary.json"]
    res = run(cli, "--input", tmp_path / "in", "--output", tmp_path / "p" / "result.dcm")
    assert_one_line_error(res, "result.dcm", "--format dicom-seg")


def test_sample_writes_series_that_run_and_evaluate_read(cli, tmp_path):
    res = cli("sample", "medical", "--format", "dicom", "--output", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert "2 labelled sample(s)" in res.output
    assert sorted(p.name for p in (tmp_path / "s" / "images").iterdir()) == ["axial", "oblique"]
    res = cli("sample", "medical", "--format", "png", "--output", tmp_path / "x")
    assert_one_line_error(res, "--format 'png'", "dicom")
    # a label stored in another voxel order on the same grid (dcm2niix flips the rows) lines up
    label = nib.load(tmp_path / "s" / "labels" / "axial.nii.gz")
    flipped = nib.Nifti1Image(np.asarray(label.dataobj)[:, ::-1].copy(), label.affine @ nib.orientations.inv_ornt_aff(
        np.array([[0, 1], [1, -1], [2, 1]]), label.shape))
    nib.save(flipped, tmp_path / "s" / "labels" / "axial.nii.gz")
    res = cli("evaluate", "medical", "--data", tmp_path / "s", "--model", MODEL, "--device", "cpu",
              "--output", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["cases"] == 2 and metrics["classes"]["liver"]["dice"] > 0.9


def test_explain_reads_each_series_as_one_case_on_its_own_grid(cli, tmp_path):
    assert cli("sample", "medical", "--format", "dicom", "--output", tmp_path / "s").exit_code == 0
    res = cli("explain", "medical", "--input", tmp_path / "s" / "images", "--class", "liver", "--model", MODEL,
              "--device", "cpu", "--output", tmp_path / "ex")
    assert res.exit_code == 0, res.output
    cams = sorted(p.name for p in (tmp_path / "ex").glob("*_cam.nii.gz"))
    assert cams == ["phantom_axial_liver_cam.nii.gz", "phantom_oblique_liver_cam.nii.gz"]
    run(cli, "--input", tmp_path / "s" / "images" / "oblique", "--output", tmp_path / "seg")
    cam = nib.load(tmp_path / "ex" / "phantom_oblique_liver_cam.nii.gz")
    seg = nib.load(next((tmp_path / "seg").glob("*.nii.gz")))
    assert cam.shape == seg.shape and np.allclose(cam.affine, seg.affine, atol=1e-4)  # the series' own grid
