import json

import numpy as np
import pytest
import torch

from segsuite.core.classmap import ClassMap, default_palette
from segsuite.core.errors import ClassMapError, InputFileError
from segsuite.plugins.driving.classes import CAMVID, CITYSCAPES, CITYSCAPES_LABELS


def test_cityscapes_has_19_train_classes_and_remaps_34_label_ids():
    assert CITYSCAPES.num_classes == 19
    assert CITYSCAPES.names[0] == "road" and CITYSCAPES.names[18] == "bicycle"
    assert CITYSCAPES.colors[CITYSCAPES.index("car")] == (0, 0, 142)
    raw = np.arange(34).reshape(2, 17)
    train = CITYSCAPES.to_train_ids(raw)
    expected = np.array([tid for _lid, _n, tid, _c, _col in CITYSCAPES_LABELS]).reshape(2, 17)
    np.testing.assert_array_equal(train, expected)
    # ids never seen in the table (e.g. -1 license plate stored as 255, or junk) become ignore
    np.testing.assert_array_equal(CITYSCAPES.to_train_ids(np.array([200, 34, -1])), [255, 255, 255])


def test_remap_torch_matches_numpy_and_stays_on_device():
    raw = torch.randint(0, 40, (3, 8, 8))
    out = CITYSCAPES.to_train_ids(raw)
    assert out.device == raw.device and out.dtype == torch.long
    np.testing.assert_array_equal(out.numpy(), CITYSCAPES.to_train_ids(raw.numpy()))


def test_to_raw_ids_inverts_train_ids_for_the_official_evaluation():
    train = np.arange(19)
    raw = CITYSCAPES.to_raw_ids(train)
    np.testing.assert_array_equal(CITYSCAPES.to_train_ids(raw), train)
    assert raw[0] == 7 and raw[18] == 33


def test_camvid_void_is_ignored():
    assert CAMVID.num_classes == 11
    np.testing.assert_array_equal(CAMVID.to_train_ids(np.array([0, 10, 11])), [0, 10, 255])


def test_round_trip_through_json(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(CITYSCAPES.to_dict()))
    again = ClassMap.from_json(path)
    assert again.names == CITYSCAPES.names
    assert again.colors == CITYSCAPES.colors
    assert again.raw_ids == CITYSCAPES.raw_ids


def test_colorize_uses_palette_and_black_for_ignore():
    cm = ClassMap(("a", "b"), colors=((1, 2, 3), (4, 5, 6)))
    rgb = cm.colorize(np.array([[0, 1, 255]]))
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0].tolist() == [[1, 2, 3], [4, 5, 6], [0, 0, 0]]


def test_default_palette_is_distinct():
    pal = default_palette(256)
    assert len(set(pal)) == 256 and pal[0] == (0, 0, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"names": ()}, "at least one class"),
        ({"names": ("a", "a")}, "duplicate class name 'a'"),
        ({"names": ("a", " ")}, "empty name"),
        ({"names": ("a", "b"), "colors": ((0, 0, 0),)}, "1 colours for 2 classes"),
        ({"names": ("a",), "colors": ((0, 0, 300),)}, "three integers 0-255"),
        ({"names": ("a", "b"), "ignore_index": 1}, "collides with class 'b'"),
        ({"names": ("a", "b"), "raw_ids": {5: 2}}, "raw id 5 maps to train id 2"),
        ({"names": ("a", "b"), "raw_ids": {-3: 0}}, "non-negative"),
    ],
)
def test_invalid_class_maps_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ClassMapError, match=message.replace("(", r"\(")):
        ClassMap(**kwargs)


def test_table_with_duplicate_raw_ids_is_refused():
    with pytest.raises(ClassMapError, match="duplicate raw label id 7"):
        ClassMap.from_table([(7, "road", 0), (7, "street", 0)])


def test_table_with_gap_in_train_ids_is_refused():
    with pytest.raises(ClassMapError, match=r"train ids \[1\] have no row"):
        ClassMap.from_table([(0, "a", 0), (1, "c", 2)])


def test_bad_class_map_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json"):
        ClassMap.from_json(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"names": ["x", "x"]}))
    with pytest.raises(ClassMapError, match="wrong.json: .*duplicate class name"):
        ClassMap.from_json(wrong)
    with pytest.raises(InputFileError, match="missing.json: class map file not found"):
        ClassMap.from_json(tmp_path / "missing.json")


def test_from_names_parses_command_line_lists():
    cm = ClassMap.from_names("background, road ,car")
    assert cm.names == ("background", "road", "car") and cm.ignore_index == 255
