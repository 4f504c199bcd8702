"""The driving video loop's per-frame work (issue #17, item 5): the faster arg-max, the object
search that skips absent classes and the one-pass finiteness check give the same answers as the
plain versions."""

from __future__ import annotations

import numpy as np
import torch

from segsuite.core.infer import non_finite_count
from segsuite.plugins.driving.classes import CITYSCAPES, CITYSCAPES_THINGS
from segsuite.plugins.driving.scenes import _argmax, objects_of


def test_argmax_equals_torch_argmax_including_ties():
    probs = torch.randn(19, 40, 70).softmax(0)
    probs[:, :5] = 1 / 19  # every class tied: the first wins, as with argmax
    probs[3, 10:12] = probs[7, 10:12] = 2.0  # a tie between two classes
    got = _argmax(probs)
    assert got.dtype == np.uint8 and np.array_equal(got, probs.argmax(0).numpy())
    assert (got[:5] == 0).all() and (got[10:12] == 3).all()


def test_objects_skip_absent_classes_without_changing_the_answer():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 11, (64, 96)).astype(np.uint8)  # stuff classes only: no object
    assert objects_of(labels, CITYSCAPES) == []
    car, person = CITYSCAPES.index("car"), CITYSCAPES.index("person")
    labels[10:20, 10:30] = car
    labels[40:60, 50:55] = person
    labels[40:60, 70:75] = person
    found = objects_of(labels, CITYSCAPES)
    assert sorted((o["class"], tuple(o["bbox_xywh"])) for o in found) == [
        ("car", (10, 10, 20, 10)), ("person", (50, 40, 5, 20)), ("person", (70, 40, 5, 20))]
    wide = labels.astype(np.int64)  # another dtype takes the path that tries every class
    assert objects_of(wide, CITYSCAPES) == found
    assert {"car", "person"} < set(CITYSCAPES_THINGS)


def test_non_finite_count_is_exact():
    x = torch.randn(3, 50, 60)
    assert non_finite_count(x) == 0
    x[0, 0, 0], x[1, 2, 3], x[2, 4, 5], x[2, 6, 7] = float("nan"), float("inf"), float("-inf"), float("inf")
    assert non_finite_count(x) == 4
    huge = torch.full((1000,), 3e38)  # finite values whose sum overflows float32
    assert non_finite_count(huge) == 0 and non_finite_count(huge.double() * 1e10) == 0
    assert non_finite_count(torch.full((10,), 60000.0, dtype=torch.float16)) == 0
    assert non_finite_count(torch.ones(4, dtype=torch.uint8)) == 0
