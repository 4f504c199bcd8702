import json

import numpy as np
import pytest

from conftest import assert_one_line_error
from segsuite.core.classmap import ClassMap
from segsuite.core.data.images import read_image_array, read_mask, write_image
from segsuite.core.data.labels import import_color_masks, import_coco, import_labelme


@pytest.fixture
def coco(tmp_path):
    from pycocotools import mask as cocomask

    write_image(tmp_path / "imgs" / "a.jpg", np.zeros((40, 50, 3), np.uint8))
    write_image(tmp_path / "imgs" / "b.png", np.zeros((6, 5, 3), np.uint8))
    blob = np.zeros((40, 50), np.uint8, order="F")
    blob[5:9, 30:45] = 1
    compressed = cocomask.encode(blob)
    compressed["counts"] = compressed["counts"].decode()
    small = np.zeros((6, 5), np.uint8)
    small[1:3, 2:4] = 1
    # uncompressed RLE: run lengths over the column-major (Fortran) flattening, starting with zeros
    flat = small.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50},
                   {"id": 2, "file_name": "b.png", "height": 6, "width": 5}],
        "categories": [{"id": 3, "name": "scratch"}, {"id": 7, "name": "dent"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400},
            {"id": 11, "image_id": 1, "category_id": 7, "segmentation": compressed, "area": 60},
            {"id": 12, "image_id": 2, "category_id": 7, "segmentation": {"size": [6, 5], "counts": runs}, "area": 4},
            {"id": 13, "image_id": 1, "category_id": 3, "segmentation": [[1, 1, 2, 2]]},
            {"id": 14, "image_id": 1, "category_id": 99, "segmentation": [[1, 1, 5, 1, 5, 5]]},
            {"id": 15, "image_id": 42, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return tmp_path, path, blob, small


def test_coco_polygons_and_rle(coco):
    tmp_path, path, blob, small = coco
    result = import_coco(path, tmp_path / "imgs", tmp_path / "out")
    assert result.class_map.names == ("background", "scratch", "dent")
    a = read_mask(tmp_path / "out" / "masks" / "a.png")
    assert a.shape == (40, 50)
    square = a == 1
    assert square[12:29, 12:29].all() and not square[:9].any() and not square[:, 32:].any()
    assert 380 <= square.sum() <= 441
    np.testing.assert_array_equal(a == 2, blob.astype(bool))
    b = read_mask(tmp_path / "out" / "masks" / "b.png")
    np.testing.assert_array_equal(b == 2, small.astype(bool))
    assert len(result.problems) == 3
    assert any("annotation 13: polygon needs at least 3 x,y points" in p for p in result.problems)
    assert any("annotation 14: unknown category_id 99" in p for p in result.problems)
    assert any("annotation 15: image_id 42 is not in 'images'" in p for p in result.problems)
    assert all(p.startswith(str(path)) for p in result.problems)


def test_coco_cli_reports_every_problem_and_exits_2(coco, cli):
    tmp_path, path, *_ = coco
    res = cli("labels", "import", "--format", "coco", "--input", path, "--images", tmp_path / "imgs", "--output", tmp_path / "o")
    assert res.exit_code == 2
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: warning:")]
    assert len(warnings) == 3
    assert res.stderr.splitlines()[-1].startswith("segsuite: error: 3 annotation problem(s)")
    assert (tmp_path / "o" / "manifest.csv").exists() and (tmp_path / "o" / "classes.json").exists()
    ok = cli("labels", "import", "--format", "coco", "--input", path, "--images", tmp_path / "imgs", "--output",
             tmp_path / "o2", "--allow-problems")
    assert ok.exit_code == 0 and "2 mask(s), 3 classes" in ok.stdout


def test_coco_not_coco(tmp_path, cli):
    (tmp_path / "x.json").write_text("[1, 2]")
    (tmp_path / "imgs").mkdir()
    assert_one_line_error(cli("labels", "import", "--format", "coco", "--input", tmp_path / "x.json", "--images",
                              tmp_path / "imgs", "--output", tmp_path / "o"), "x.json: not a COCO file")


def test_labelme(tmp_path):
    write_image(tmp_path / "lm" / "part.png", np.zeros((30, 40, 3), np.uint8))
    doc = {
        "imagePath": "part.png", "imageHeight": 30, "imageWidth": 40,
        "shapes": [
            {"label": "crack", "shape_type": "polygon", "points": [[5, 5], [15, 5], [15, 15], [5, 15]]},
            {"label": "spot", "shape_type": "rectangle", "points": [[20, 20], [30, 25]]},
            {"label": "spot", "shape_type": "circle", "points": [[30, 8], [33, 8]]},
            {"label": "crack", "shape_type": "polygon", "points": [[1, 1], [2, 2]]},
        ],
    }
    (tmp_path / "lm" / "part.json").write_text(json.dumps(doc))
    result = import_labelme(tmp_path / "lm", tmp_path / "out")
    assert result.class_map.names == ("background", "crack", "spot")
    m = read_mask(tmp_path / "out" / "masks" / "part.png")
    assert (m[6:15, 6:15] == 1).all() and (m[21:25, 21:30] == 2).all() and m[8, 30] == 2 and m[0, 0] == 0
    assert result.problems == [f"{tmp_path / 'lm' / 'part.json'}: shape 3 ('crack'): polygon with 2 point(s)"]


def test_colour_masks(tmp_path):
    cm = ClassMap(("bg", "road", "car"), colors=((0, 0, 0), (128, 64, 128), (0, 0, 142)))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0] = (128, 64, 128)
    rgb[1, :2] = (0, 0, 142)
    rgb[3, 3] = (1, 2, 3)  # not in the palette
    write_image(tmp_path / "colour" / "f1.png", rgb)
    write_image(tmp_path / "imgs" / "f1.jpg", np.zeros((4, 4, 3), np.uint8))
    result = import_color_masks(tmp_path / "colour", tmp_path / "imgs", tmp_path / "out", cm)
    m = read_mask(tmp_path / "out" / "masks" / "f1.png")
    assert m[0].tolist() == [1, 1, 1, 1] and m[1].tolist() == [2, 2, 0, 0] and m[3, 3] == 255
    assert len(result.problems) == 1 and "1 pixels have colours not in the palette, e.g. #010203 (1 px)" in result.problems[0]
    assert read_image_array(tmp_path / "out" / "masks" / "f1.png").dtype == np.uint8


def test_mvtec_layout(tmp_path, cli):
    from segsuite.core.data.datasets import read_manifest

    root = tmp_path / "bottle"
    write_image(root / "train" / "good" / "000.png", np.full((8, 8), 100, np.uint8))
    write_image(root / "test" / "good" / "000.png", np.full((8, 8), 100, np.uint8))
    write_image(root / "test" / "crack" / "000.png", np.full((8, 8), 90, np.uint8))
    write_image(root / "test" / "scratch" / "000.png", np.full((8, 8), 80, np.uint8))
    write_image(root / "test" / "scratch" / "001.png", np.full((8, 8), 80, np.uint8))
    gt = np.zeros((8, 8), np.uint8)
    gt[2:4, 2:6] = 255
    write_image(root / "ground_truth" / "crack" / "000_mask.png", gt)
    write_image(root / "ground_truth" / "scratch" / "000_mask.png", gt)
    res = cli("labels", "import", "--format", "mvtec", "--input", root, "--output", tmp_path / "out")
    assert res.exit_code == 2  # scratch/001 has no ground truth: reported, not dropped silently
    assert "001.png: no ground-truth mask" in res.stderr
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes["names"] == ["good", "crack", "scratch"]
    pairs = {p.mask.name: p for p in read_manifest(tmp_path / "out" / "manifest.csv")}
    assert set(pairs) == {"train_good_000.png", "test_good_000.png", "test_crack_000.png", "test_scratch_000.png"}
    assert pairs["test_crack_000.png"].group == "test/crack"
    assert read_mask(tmp_path / "out" / "masks" / "test_crack_000.png")[2, 2] == 1
    assert read_mask(tmp_path / "out" / "masks" / "test_scratch_000.png")[3, 5] == 2
    assert read_mask(tmp_path / "out" / "masks" / "train_good_000.png").max() == 0
