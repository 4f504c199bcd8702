"""DICOM series in: the volume and its grid equal the NIfTI of the same image in every orientation;
bad series are refused in one line that names the problem; pixel data as pydicom decodes it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from segsuite.core.errors import InputFileError
from segsuite.plugins.medical.dicom import open_series, scan_files
from segsuite.plugins.medical.dicom_pixels import read_pixels
from segsuite.plugins.medical.dicom_synthetic import LPS, dicom_geometry, phantom_volume, write_series

# (axis codes of the stored grid, oblique tilt in degrees)
ORIENTATIONS = {
    "axial-lps": ("LPS", 0.0),
    "reversed": ("LPI", 0.0),  # slices stored head to feet: against the slice normal
    "sagittal": ("PIL", 0.0),
    "oblique": ("RAS", 12.0),
}


def series_of(folder: Path):
    scan = scan_files(sorted(p for p in Path(folder).rglob("*") if p.is_file()))
    assert len(scan.series) == 1
    s = scan.series[0]
    return open_series(s.source, s.files)


def to_reference_order(array: np.ndarray, affine: np.ndarray, reference_affine: np.ndarray) -> np.ndarray:
    """``array`` (on ``affine``) in the voxel order of ``reference_affine``, after asserting that both
    describe the same voxel centres (the axes may only be permuted or reversed)."""
    m = np.linalg.inv(reference_affine) @ affine
    perm = np.abs(np.round(m[:3, :3]))
    np.testing.assert_allclose(m[:3, :3], np.round(m[:3, :3]), atol=1e-6)
    assert (perm.sum(0) == 1).all() and (perm.sum(1) == 1).all()
    np.testing.assert_allclose(m[:3, 3], np.round(m[:3, 3]), atol=1e-5)
    return nib.orientations.apply_orientation(array, nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.io_orientation(reference_affine)))


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_series_is_the_nifti_volume_on_the_same_world_grid(tmp_path, name):
    codes, tilt = ORIENTATIONS[name]
    image, _labels, affine = phantom_volume(3, codes, tilt)
    write_series(tmp_path / "s", image, affine, seed=3)  # random file names and InstanceNumbers
    series = series_of(tmp_path / "s")
    item = series.read()
    assert item.array.shape == (1, *series.shape) and item.array.dtype == np.float32
    # every voxel centre of the series is a voxel centre of the NIfTI grid, holding the same HU
    back = to_reference_order(item.array[0], series.affine, affine)
    np.testing.assert_array_equal(back, image.astype(np.float32))
    np.testing.assert_allclose(sorted(item.spatial.pixel_size), sorted(np.linalg.norm(affine[:3, :3], axis=0)), rtol=1e-9)
    # slices come out ordered along the normal: the first file's position is the affine's origin
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in series.headers])
    normal = np.cross(*np.array([float(v) for v in series.headers[0].ImageOrientationPatient]).reshape(2, 3))
    assert (np.diff(positions @ normal) > 0).all()
    np.testing.assert_allclose((np.diag([-1, -1, 1]) @ series.affine[:3, 3]), positions[0], atol=1e-9)


def test_slice_order_comes_from_positions_not_names_or_instance_numbers(tmp_path):
    image, _labels, affine = phantom_volume(4, "LPS")
    files = write_series(tmp_path / "s", image, affine, shuffle=False)  # IM0001... in slice order
    for f in files:  # names and InstanceNumbers now say the opposite of the positions
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = len(files) + 1 - int(ds.InstanceNumber)
        ds.save_as(f)
    moved = [f.rename(f.with_name(f"tmp{i}")) for i, f in enumerate(files)]
    for i, f in enumerate(moved):
        f.rename(f.with_name(f"IM{len(files) - i:04d}.dcm"))
    np.testing.assert_array_equal(series_of(tmp_path / "s").read().array[0], image.astype(np.float32))


def test_nested_folders_and_several_series_are_grouped_by_uid(tmp_path):
    a, _l, aff_a = phantom_volume(5, "LPS")
    b, _l, aff_b = phantom_volume(6, "PIL")
    files_a = write_series(tmp_path / "x", a, aff_a, series_number=1, description="CT one")
    files_b = write_series(tmp_path / "x", b, aff_b, series_number=2, description="CT two")
    for f in files_a[::2]:  # half of series one in a sub-folder of the other's folder
        (tmp_path / "x" / "deep").mkdir(exist_ok=True)
        f.rename(tmp_path / "x" / "deep" / f.name)
    scan = scan_files(sorted(p for p in tmp_path.rglob("*") if p.is_file()))
    assert [len(s.files) for s in scan.series] == [len(files_a), len(files_b)]
    assert [s.stem for s in scan.series] == ["CT_one", "CT_two"]
    assert scan.series[0].source == tmp_path / "x" / scan.series[0].uid


def test_rescale_slope_and_intercept_per_slice(tmp_path):
    image, _labels, affine = phantom_volume(7, "LPS")
    files = write_series(tmp_path / "s", image, affine, shuffle=False)
    expected = []
    for k, f in enumerate(files):  # PET-like: every slice its own scale
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = f"{0.5 + 0.25 * (k % 3)}", f"{-1000 + k}"
        ds.save_as(f)
        expected.append(ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    got = series_of(tmp_path / "s").read().array[0]
    np.testing.assert_allclose(got, np.stack(expected).transpose(2, 1, 0), rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_stored_below_bits_allocated_reads_as_pydicom_decodes(tmp_path, signed):
    image, _labels, affine = phantom_volume(8, "LPS")
    files = write_series(tmp_path / "s", image, affine, shuffle=False)
    rng = np.random.default_rng(0)
    for f in files:  # 12 bits stored; the top 4 bits carry noise that must be masked away
        ds = pydicom.dcmread(f)
        values = rng.integers(0, 4096, (ds.Rows, ds.Columns), dtype=np.uint16)
        values |= (rng.integers(0, 16, values.shape, dtype=np.uint16) << 12)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        ds.PixelData = values.astype(np.int16 if signed else np.uint16).tobytes()
        ds.save_as(f)
    series = series_of(tmp_path / "s")
    ours = read_pixels(series.files, series.headers)
    theirs = np.stack([pydicom.dcmread(f).pixel_array for f in series.files])
    np.testing.assert_array_equal(ours, theirs)
    assert ours.min() < 0 if signed else ours.max() < 4096


def test_rle_compressed_series_decodes_to_the_same_volume(tmp_path):
    from pydicom.uid import RLELossless

    image, _labels, affine = phantom_volume(9, "LPS")
    files = write_series(tmp_path / "s", image, affine)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f)
    assert str(pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID) == RLELossless
    np.testing.assert_array_equal(series_of(tmp_path / "s").read().array[0], image.astype(np.float32))


def test_a_syntax_without_decoder_is_one_line_naming_it(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    candidates = ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.90",
                  "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.110"]
    missing = []
    for uid in candidates:
        try:
            if not get_decoder(uid).is_available:
                missing.append(uid)
        except NotImplementedError:  # no decoder of pydicom's for this syntax at all
            missing.append(uid)
    if not missing:
        pytest.skip("every candidate syntax has a decoder installed here")
    uid = pydicom.uid.UID(missing[0])
    image, _labels, affine = phantom_volume(10, "LPS")
    files = write_series(tmp_path / "s", image, affine)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = encapsulate([b"\xff\xd8 not decodable here \xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(InputFileError) as err:
        series_of(tmp_path / "s").read()
    message = str(err.value)
    assert "\n" not in message and str(uid) in message and uid.name in message and "decoder" in message


# -- bad series ------------------------------------------------------------------------


def _bad(tmp_path: Path, break_it) -> str:
    image, _labels, affine = phantom_volume(11, "LPS")
    geo = dicom_geometry(affine, image.shape)
    positions = [[float(v) for v in p] for p in geo["positions"]]
    files = break_it(image, affine, positions)
    with pytest.raises(InputFileError) as err:
        series = series_of(files[0].parent) if files else None
        series.read()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_irregular_gap_is_named(tmp_path):
    def gap(image, affine, positions):
        for p in positions[10:]:
            p[2] += 2.0  # 2 mm more between slices 9 and 10 (spacing ~5-7 mm): not a whole slice
        return write_series(tmp_path / "s", image, affine, positions=positions)

    message = _bad(tmp_path, gap)
    assert "non-uniform slice spacing" in message and "gap of" in message


def test_missing_slice_is_named(tmp_path):
    def missing(image, affine, positions):
        files = write_series(tmp_path / "s", image, affine, shuffle=False)
        files[12].unlink()
        return [f for f in files if f.exists()]

    message = _bad(tmp_path, missing)
    assert "missing slice(s)" in message and "about 1 slice(s) missing" in message


def test_gantry_tilt_is_refused(tmp_path):
    def tilt(image, affine, positions):
        step = np.linalg.norm(affine[:3, 2])
        for k, p in enumerate(positions):
            p[1] += k * step * np.tan(np.radians(15))  # each slice shifted along the column direction
        return write_series(tmp_path / "s", image, affine, positions=positions)

    message = _bad(tmp_path, tilt)
    assert "gantry tilt of about 15.0" in message


def test_mixed_sizes_in_one_series_are_refused(tmp_path):
    def sizes(image, affine, positions):
        files = write_series(tmp_path / "s", image, affine, shuffle=False)
        ds = pydicom.dcmread(files[5])
        ds.Rows, ds.Columns = 16, 16
        ds.PixelData = np.zeros((16, 16), np.uint16).tobytes()
        ds.save_as(files[5])
        return files

    message = _bad(tmp_path, sizes)
    assert "mixed image rows" in message and "IM0006.dcm" in message


def test_mixed_orientations_are_refused(tmp_path):
    def localizer(image, affine, positions):
        files = write_series(tmp_path / "s", image, affine, shuffle=False)
        ds = pydicom.dcmread(files[0])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal localizer left in the series
        ds.save_as(files[0])
        return files

    assert "mixed orientations" in _bad(tmp_path, localizer)


def test_repeated_positions_are_refused(tmp_path):
    def repeated(image, affine, positions):
        positions[4] = list(positions[3])
        return write_series(tmp_path / "s", image, affine, positions=positions)

    assert "two slices at the same position" in _bad(tmp_path, repeated)


def test_truncated_file_is_named(tmp_path):
    def truncated(image, affine, positions):
        files = write_series(tmp_path / "s", image, affine, shuffle=False)
        data = files[7].read_bytes()
        files[7].write_bytes(data[: len(data) - 1000])  # cut inside the pixel data
        return files

    message = _bad(tmp_path, truncated)
    assert "IM0008.dcm" in message and "truncated" in message


def test_non_image_objects_are_set_aside_and_non_dicom_files_listed(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    image, _labels, affine = phantom_volume(12, "LPS")
    write_series(tmp_path / "s", image, affine)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID, sr.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    sr.SeriesInstanceUID, sr.Modality = generate_uid(), "SR"
    sr.save_as(tmp_path / "s" / "report", enforce_file_format=True)
    (tmp_path / "s" / "notes.bin").write_bytes(b"\x00" * 400)
    scan = scan_files(sorted(p for p in tmp_path.rglob("*") if p.is_file()))
    assert len(scan.series) == 1 and len(scan.series[0].files) == image.shape[2]
    assert list(scan.skipped) == ["a Comprehensive SR Storage"]
    assert scan.not_dicom == [tmp_path / "s" / "notes.bin"]


def test_lps_conversion_matches_the_dicom_standard_example():
    """A plain axial slice: rows along patient left (+x LPS), columns posterior; world RAS flips x and y."""
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])  # RAS: i -> L, j -> P, k -> S
    affine[:3, 3] = [100.0, 120.0, -50.0]
    geo = dicom_geometry(affine, (4, 4, 3))
    assert [float(v) for v in geo["iop"]] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in geo["positions"][0]] == list(LPS @ [100.0, 120.0, -50.0])
    assert [float(v) for v in geo["spacing"]] == [0.7, 0.7]


def test_a_header_cut_short_fails_on_its_own_and_leaves_a_missing_slice(tmp_path):
    from segsuite.plugins.medical.inputs import open_case

    image, _labels, affine = phantom_volume(13, "LPS")
    files = write_series(tmp_path / "s", image, affine, shuffle=False)
    files[9].write_bytes(files[9].read_bytes()[:400])  # inside the header
    scan = scan_files(sorted((tmp_path / "s").iterdir()))
    assert scan.not_dicom == [files[9]] and len(scan.series[0].files) == len(files) - 1
    with pytest.raises(InputFileError, match="IM0010.dcm.*truncated") as err:
        open_case(files[9])
    assert "\n" not in str(err.value)
    with pytest.raises(InputFileError, match="missing slice"):
        open_series(scan.series[0].source, scan.series[0].files)


def test_seg_of_an_empty_result_keeps_every_frame_and_unknown_classes_get_a_generic_code(tmp_path):
    import highdicom as hd

    from segsuite.plugins.medical.dicom_seg import write_dicom_seg

    image, _labels, affine = phantom_volume(14, "LPS")
    write_series(tmp_path / "s", image, affine)
    series = series_of(tmp_path / "s")
    names = ("background", "Kidneys", "widget")
    record = write_dicom_seg(np.zeros(series.shape, np.uint8), series, names, ((0, 0, 0), (1, 2, 3), (4, 5, 6)),
                             tmp_path / "seg.dcm", model="m")
    assert record["frames"] == 2 * series.shape[2]
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    uids = [str(h.SOPInstanceUID) for h in series.headers]
    assert not seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True).any()
    kidney, widget = (s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence)
    assert (kidney.CodeValue, widget.CodeValue, widget.CodeMeaning) == ("64033007", "85756007", "Tissue")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Kidneys", "widget"]
