import math

import numpy as np
import pytest
import torch

from segsuite.core.errors import SegsuiteError
from segsuite.core.metrics import ConfusionMatrix, SegmentationMetrics, boundary_f1


def test_hand_computed_case():
    # truth rows, prediction columns
    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])
    cm = ConfusionMatrix(4, ignore_index=255, class_names=["a", "b", "c", "d"])
    cm.update(pred, target)
    m = cm.compute()
    np.testing.assert_array_equal(m.confusion, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert m.global_accuracy == pytest.approx(3 / 5)
    np.testing.assert_allclose(m.accuracy[:3], [1 / 2, 1.0, 0.0])
    np.testing.assert_allclose(m.iou[:3], [1 / 3, 2 / 3, 0.0])
    assert math.isnan(m.iou[3]) and math.isnan(m.accuracy[3])  # absent from truth and prediction
    assert m.mean_iou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m.mean_accuracy == pytest.approx((0.5 + 1 + 0) / 3)
    assert m.weighted_iou == pytest.approx(2 / 5 * 1 / 3 + 2 / 5 * 2 / 3 + 1 / 5 * 0)
    np.testing.assert_allclose(m.dice[:3], [2 / 4, 4 / 5, 0.0])
    np.testing.assert_allclose(m.precision[:3], [1 / 2, 2 / 3, float("nan")], equal_nan=True)
    np.testing.assert_allclose(m.normalized_confusion[0], [0.5, 0.5, 0, 0])
    d = m.to_dict()
    assert d["per_class"]["d"]["iou"] is None and d["mean_iou"] == pytest.approx(1 / 3)
    assert "mean IoU" in m.table()


def test_predicted_but_absent_class_has_iou_zero():
    m = SegmentationMetrics(["a", "b"], np.array([[3, 1], [0, 0]]))
    assert m.iou[1] == 0.0 and m.mean_iou == pytest.approx((3 / 4 + 0) / 2)


def test_accumulation_equals_one_big_batch_and_logits_accepted():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 16, 16, generator=g)
    target = torch.randint(0, 5, (6, 16, 16), generator=g)
    target[:, :2] = 255
    a = ConfusionMatrix(5)
    for i in range(0, 6, 2):
        a.update(logits[i:i + 2], target[i:i + 2])
    b = ConfusionMatrix(5)
    b.update(logits.argmax(1), target)
    np.testing.assert_array_equal(a.matrix(), b.matrix())


def test_labels_out_of_range_are_reported_not_counted():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 7]]))
    with pytest.raises(SegsuiteError, match="outside 0..2"):
        cm.compute()


@pytest.mark.parametrize("dims", [2, 3])
def test_agrees_with_torchmetrics_on_random_data(dims):
    from torchmetrics.functional.classification import (
        multiclass_accuracy, multiclass_confusion_matrix, multiclass_f1_score, multiclass_jaccard_index,
        multiclass_precision,
    )

    g = torch.Generator().manual_seed(dims)
    shape = (4, 12, 12) if dims == 2 else (2, 6, 7, 8)
    k = 6
    target = torch.randint(0, k, shape, generator=g)
    target[torch.rand(shape, generator=g) < 0.1] = 255
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target.clamp(max=k - 1), torch.randint(0, k, shape, generator=g))
    cm = ConfusionMatrix(k)
    cm.update(pred, target)
    m = cm.compute()
    kw = dict(num_classes=k, ignore_index=255)
    np.testing.assert_array_equal(m.confusion, multiclass_confusion_matrix(pred, target, **kw).numpy())
    np.testing.assert_allclose(m.iou, multiclass_jaccard_index(pred, target, average=None, **kw).numpy(), rtol=1e-5, atol=1e-6)  # torchmetrics computes in float32
    np.testing.assert_allclose(m.accuracy, multiclass_accuracy(pred, target, average=None, **kw).numpy(), rtol=1e-5, atol=1e-6)  # torchmetrics computes in float32
    np.testing.assert_allclose(m.dice, multiclass_f1_score(pred, target, average=None, **kw).numpy(), rtol=1e-5, atol=1e-6)  # torchmetrics computes in float32
    np.testing.assert_allclose(m.precision, multiclass_precision(pred, target, average=None, **kw).numpy(), rtol=1e-5, atol=1e-6)  # torchmetrics computes in float32
    assert m.global_accuracy == pytest.approx(multiclass_accuracy(pred, target, average="micro", **kw).item(), rel=1e-5, abs=1e-6)
    assert m.mean_iou == pytest.approx(multiclass_jaccard_index(pred, target, average="macro", **kw).item(), rel=1e-5, abs=1e-6)


def test_per_image_table():
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[1, :, 2:] = 1
    pred = target.clone()
    pred[1, 0, 2] = 0
    cm = ConfusionMatrix(2, per_image=True)
    cm.update(pred, target)
    rows = cm.compute().per_image
    assert len(rows) == 2
    assert rows[0]["global_accuracy"] == 1.0 and rows[0]["mean_iou"] == 1.0  # class 1 absent: NaN, excluded
    assert rows[1]["global_accuracy"] == pytest.approx(15 / 16)


def test_boundary_f1_perfect_shifted_and_absent():
    t = torch.zeros(1, 64, 64, dtype=torch.long)
    t[0, 16:48, 16:48] = 1
    assert boundary_f1(t, t, 3, 255)[0, :2].tolist() == [1.0, 1.0]
    assert math.isnan(boundary_f1(t, t, 3, 255)[0, 2])
    far = torch.roll(t, shifts=10, dims=2)  # beyond 0.75 % of the diagonal (~0.68 px -> 1 px)
    bf = boundary_f1(far, t, 3, 255)[0, 1]
    assert 0 < bf < 0.6
    near = torch.roll(t, shifts=1, dims=2)
    assert boundary_f1(near, t, 3, 255)[0, 1] > 0.9
    cm = ConfusionMatrix(3, boundary=True, per_image=True)
    cm.update(t, t)
    m = cm.compute()
    assert m.mean_bf == 1.0 and m.per_image[0]["mean_bf_score"] == 1.0
