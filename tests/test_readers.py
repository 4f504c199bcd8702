"""Readers keep the spatial reference that writers will need to restore."""

from __future__ import annotations

import numpy as np
import pytest

from segsuite.core.data.images import read_image, read_mask, write_image
from segsuite.core.errors import InputFileError
from segsuite.core.plugins import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False)


def test_nifti_reader_keeps_oblique_affine_zooms_and_codes(tmp_path, registry):
    import nibabel as nib

    angle = np.deg2rad(20)
    affine = np.array([
        [-0.8 * np.cos(angle), 0.0, 0.8 * np.sin(angle), 10.0],
        [0.0, -0.8, 0.0, 20.0],
        [0.8 * np.sin(angle), 0.0, 0.8 * np.cos(angle), -30.0],
        [0, 0, 0, 1],
    ]) @ np.diag([1.0, 1.0, 2.5, 1.0])
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    path = tmp_path / "scan.nii.gz"
    nib.save(img, path)

    reader = registry.domain("medical").reader_for(path)
    item = reader(path)
    assert item.array.shape == (1, 5, 6, 7) and item.array.dtype == np.int16
    np.testing.assert_array_equal(item.array[0], data)
    np.testing.assert_allclose(item.spatial.affine_array(), affine, atol=1e-6)
    np.testing.assert_allclose(item.spatial.pixel_size, (0.8, 0.8, 2.0), atol=1e-6)
    assert item.spatial.extra["qform_code"] == 1 and item.spatial.extra["sform_code"] == 2
    assert item.spatial.sample_area() == pytest.approx(0.8 * 0.8 * 2.0, rel=1e-6)
    assert item.name == "scan"


def test_nifti_reader_names_the_broken_file(tmp_path, registry):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(InputFileError, match="broken.nii.gz: not a readable NIfTI file"):
        registry.domain("medical").reader_for(bad)(bad)


def test_geotiff_reader_keeps_crs_transform_and_nodata(tmp_path, registry):
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    transform = from_origin(500000.0, 4100000.0, 10.0, 10.0)
    data = np.random.default_rng(0).integers(0, 4000, (4, 20, 30), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=transform, nodata=65535) as dst:
        dst.write(data)
    item = registry.domain("satellite").reader_for(path)(path)
    np.testing.assert_array_equal(item.array, data)
    assert item.spatial.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 4100000.0)
    assert "32633" in item.spatial.crs or "UTM zone 33N" in item.spatial.crs
    assert item.spatial.nodata == 65535 and item.spatial.units == "metre"
    assert item.spatial.sample_area() == 100.0


def test_image_reader_keeps_16_bit_and_channel_order(tmp_path):
    grey16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    write_image(tmp_path / "g.png", grey16)
    item = read_image(tmp_path / "g.png")
    assert item.array.dtype == np.uint16 and item.array.shape == (1, 4, 5)
    np.testing.assert_array_equal(item.array[0], grey16)

    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    write_image(tmp_path / "c.png", rgb)
    item = read_image(tmp_path / "c.png")
    assert item.array.shape == (3, 2, 3) and item.array[0].min() == 200 and item.array[2].max() == 0


def test_image_errors_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_text("nope")
    with pytest.raises(InputFileError, match="junk.png: not a readable image"):
        read_image(tmp_path / "junk.png")
    write_image(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputFileError, match="rgb.png: label mask has 3 channels"):
        read_mask(tmp_path / "rgb.png")


def test_domain_rejects_unknown_suffix(tmp_path, registry):
    with pytest.raises(InputFileError, match=r"scan.dcm: domain 'medical' has no reader .* \(known: .nii, .nii.gz\)"):
        registry.domain("medical").reader_for(tmp_path / "scan.dcm")
