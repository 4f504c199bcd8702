import numpy as np
import pytest
import torch

from segsuite.core.classmap import ClassMap
from segsuite.core.data.datasets import Pair, SegmentationDataset, read_manifest, scan_pairs, write_manifest
from segsuite.core.data.images import write_image
from segsuite.core.data.split import kfold_pairs, split_pairs
from segsuite.core.data.stats import count_classes
from segsuite.core.data.synthetic import SHAPES, make_shapes_dataset
from segsuite.core.data.transforms import Augment, random_crop
from segsuite.core.errors import InputFileError, SegsuiteError


def fake_pairs(groups: dict[str, int]) -> list[Pair]:
    from pathlib import Path

    return [Pair(Path(f"/d/{g}_slice{i:02d}.png"), Path(f"/m/{g}_slice{i:02d}.png")) for g, n in groups.items() for i in range(n)]


def test_split_ratios_reproducible_and_groups_never_cross():
    pairs = fake_pairs({f"patient{i:02d}": 1 + (i * 7) % 5 for i in range(30)})
    a = split_pairs(pairs, (0.7, 0.15, 0.15), seed=3, group_by=r"(patient\d+)_")
    b = split_pairs(pairs, (0.7, 0.15, 0.15), seed=3, group_by=r"(patient\d+)_")
    assert a == b
    c = split_pairs(pairs, (0.7, 0.15, 0.15), seed=4, group_by=r"(patient\d+)_")
    assert a != c
    groups = {name: {p.group for p in items} for name, items in a.items()}
    assert groups["train"].isdisjoint(groups["val"]) and groups["train"].isdisjoint(groups["test"]) and groups["val"].isdisjoint(groups["test"])
    assert sum(len(v) for v in a.values()) == len(pairs)
    n = len(pairs)
    assert abs(len(a["train"]) / n - 0.7) < 0.08 and abs(len(a["val"]) / n - 0.15) < 0.08


def test_kfold_covers_every_sample_once_in_validation():
    pairs = fake_pairs({f"scene{i}": 3 for i in range(10)})
    folds = kfold_pairs(pairs, 5, seed=0, group_by=r"(scene\d+)_")
    val_all = [p.image for f in folds for p in f["val"]]
    assert sorted(val_all) == sorted(p.image for p in pairs)
    for f in folds:
        assert {p.group for p in f["train"]}.isdisjoint({p.group for p in f["val"]})


def test_split_errors():
    pairs = fake_pairs({"a": 2})
    with pytest.raises(SegsuiteError, match="1 group\\(s\\) cannot fill 3 non-empty splits"):
        split_pairs(pairs, (0.7, 0.15, 0.15), group_by=r"^(\w)_")
    with pytest.raises(SegsuiteError, match="does not match this file name"):
        split_pairs(pairs, (0.5, 0.5), group_by=r"patient(\d+)")
    with pytest.raises(SegsuiteError, match="ratios"):
        split_pairs(pairs, "a,b")


def test_paired_folders_manifest_round_trip(tmp_path):
    root = make_shapes_dataset(tmp_path / "ds", n=4, size=(24, 32), seed=0)
    pairs = scan_pairs(root)
    assert [p.stem for p in pairs] == ["img_000", "img_001", "img_002", "img_003"]
    manifest = write_manifest(tmp_path / "splits" / "train.csv", pairs)
    back = read_manifest(manifest)
    assert [p.image.resolve() for p in back] == [p.image.resolve() for p in pairs]
    ds = SegmentationDataset(back, SHAPES)
    s = ds[0]
    assert s["image"].shape == (3, 24, 32) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (24, 32) and s["mask"].dtype == torch.int64
    assert set(s["mask"].unique().tolist()) <= {0, 1, 2, 255}


def test_dataset_errors_name_the_file(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputFileError, match="no masks/ folder"):
        scan_pairs(root)
    write_image(root / "masks" / "b.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputFileError, match="no mask for 1 image\\(s\\), e.g. 'a'"):
        scan_pairs(root)
    write_image(root / "masks" / "a.png", np.full((4, 4), 9, np.uint8))
    (root / "masks" / "b.png").unlink()
    ds = SegmentationDataset(scan_pairs(root), ClassMap(("x", "y")))
    with pytest.raises(InputFileError, match="a.png: label values \\[9\\] are not classes 0..1"):
        ds[0]
    (tmp_path / "m.csv").write_text("image,mask\nmissing.png,\n")
    with pytest.raises(InputFileError, match="entry 0 points to missing file"):
        read_manifest(tmp_path / "m.csv")


def test_raw_ids_are_remapped_on_load(tmp_path):
    cm = ClassMap(("road", "car"), raw_ids={7: 0, 26: 1})
    write_image(tmp_path / "ds" / "images" / "x.png", np.zeros((2, 2, 3), np.uint8))
    write_image(tmp_path / "ds" / "masks" / "x.png", np.array([[7, 26], [0, 26]], np.uint8))
    from segsuite.core.data.datasets import UnknownLabelWarning

    with pytest.warns(UnknownLabelWarning, match="1 pixels have label ids \\[0\\]"):
        s = SegmentationDataset(scan_pairs(tmp_path / "ds"), cm)[0]
    assert s["mask"].tolist() == [[0, 1], [255, 1]]


@pytest.mark.parametrize("dims", [2, 3])
def test_augment_moves_image_and_mask_together(dims):
    torch.manual_seed(0)
    shape = (12, 16) if dims == 2 else (6, 8, 10)
    # the image's first channel encodes the label, so any geometric mismatch is visible
    mask = torch.randint(0, 3, shape)
    image = torch.stack([mask.float(), torch.rand(shape)])
    aug = Augment(flip_axes=tuple(range(dims)), rotate90=True, crop=tuple(s - 2 for s in shape))
    seen = set()
    for _ in range(20):
        out = aug({"image": image, "mask": mask, "meta": {}})
        lab = out["mask"] != 255  # padding where a rotated side became shorter than the crop
        assert lab.float().mean() > 0.5
        assert torch.equal(out["image"][0].long()[lab], out["mask"][lab])
        seen.add(out["mask"].sum().item())
    assert len(seen) > 3  # it really changes something


def test_zoom_uses_linear_for_images_and_nearest_for_masks():
    torch.manual_seed(1)
    blocks = torch.randint(0, 3, (6, 8))
    mask = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)  # 48x64, constant 8x8 blocks
    image = mask.float()[None]
    for _ in range(10):
        out = Augment(scale=(0.6, 1.6))({"image": image, "mask": mask, "meta": {}})
        assert out["mask"].shape == mask.shape  # no crop size: back to the input size
        assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 255}  # nearest: no invented labels
        lab = out["mask"] != 255
        agree = (out["image"][0][lab].round().long() == out["mask"][lab]).float().mean()
        assert agree > 0.9


def test_random_crop_pads_with_ignore():
    img, msk = random_crop(torch.ones(1, 4, 4), torch.zeros(4, 4, dtype=torch.long), (6, 5), 255)
    assert msk.shape == (6, 5) and (msk[4:] == 255).all() and (img[0, 4:] == 0).all()


def test_class_weights_recipes():
    masks = [np.array([[0, 0, 0, 1]]), np.array([[0, 0, 2, 2]]), np.array([[0, 255, 0, 0]])]
    counts = count_classes(masks, ClassMap(("a", "b", "c", "d")))
    assert counts.pixels.tolist() == [8, 1, 2, 0]
    assert counts.image_pixels.tolist() == [11, 4, 4, 0]
    np.testing.assert_allclose(counts.weights("inverse"), [11 / (3 * 8), 11 / 3, 11 / 6, 0])
    f = np.array([8 / 11, 1 / 4, 2 / 4])
    np.testing.assert_allclose(counts.weights("median")[:3], np.median(f) / f)
    assert counts.weights("uniform").tolist() == [1, 1, 1, 1]


def test_foreground_crops_oversample_rare_classes():
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[50:53, 7:10] = 2  # 9 pixels of 4096
    image = torch.zeros(1, 64, 64)
    torch.manual_seed(0)
    uniform = sum(bool((Augment(crop=(16, 16))({"image": image, "mask": mask, "meta": {}})["mask"] == 2).any()) for _ in range(200))
    torch.manual_seed(0)
    focused = sum(bool((Augment(crop=(16, 16), foreground_crop=0.5)({"image": image, "mask": mask, "meta": {}})["mask"] == 2).any())
                  for _ in range(200))
    assert uniform < 40 and focused > 90


def test_unknown_raw_label_ids_are_counted_and_reported(tmp_path):
    from segsuite.core.data.datasets import UnknownLabelWarning

    cm = ClassMap(("road", "car"), raw_ids={7: 0, 26: 1}, name="mini")
    write_image(tmp_path / "ds" / "images" / "x.png", np.zeros((2, 3, 3), np.uint8))
    write_image(tmp_path / "ds" / "masks" / "x.png", np.array([[7, 26, 99], [99, 3, 7]], np.uint8))
    with pytest.warns(UnknownLabelWarning, match="x.png: 3 pixels have label ids \\[3, 99\\]"):
        s = SegmentationDataset(scan_pairs(tmp_path / "ds"), cm)[0]
    assert s["mask"].tolist() == [[0, 1, 255], [255, 255, 0]]
