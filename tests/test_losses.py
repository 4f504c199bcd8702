import math

import pytest
import torch
import torch.nn.functional as F

from segsuite.core.errors import SegsuiteError
from segsuite.core.losses import CrossEntropyLoss, DiceCELoss, DiceLoss, FocalLoss, TverskyLoss, build_loss


def data(dims: int, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 10, 12) if dims == 2 else (2, 5, 6, 7)
    logits = torch.randn(shape[0], k, *shape[1:], generator=g, dtype=torch.float64).float()
    target = torch.randint(0, k, shape, generator=g)
    return logits, target


def test_dice_hand_computed():
    # one sample, two classes, two pixels; probabilities chosen by logits
    logits = torch.log(torch.tensor([[[0.8, 0.3]], [[0.2, 0.7]]])).unsqueeze(0)  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # class 0: tp=0.8 fp=0.3 fn=0.2 -> dice=1.6/2.1 ; class 1: tp=0.7 fp=0.2 fn=0.3 -> 1.4/1.9
    expected = 1 - (1.6 / 2.1 + 1.4 / 1.9) / 2
    assert DiceLoss(smooth_nr=0, smooth_dr=0)(logits, target).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background, batch", [(True, False), (False, False), (True, True)])
def test_dice_matches_monai(dims, include_background, batch):
    from monai.losses import DiceLoss as MonaiDice

    logits, target = data(dims)
    ours = DiceLoss(include_background=include_background, batch=batch)(logits, target)
    ref = MonaiDice(softmax=True, to_onehot_y=True, include_background=include_background, batch=batch)(logits, target.unsqueeze(1))
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_dicece_matches_monai(dims):
    from monai.losses import DiceCELoss as MonaiDiceCE

    logits, target = data(dims, seed=3)
    ours = DiceCELoss(lambda_dice=0.7, lambda_ce=1.3)(logits, target)
    ref = MonaiDiceCE(softmax=True, to_onehot_y=True, lambda_dice=0.7, lambda_ce=1.3)(logits, target.unsqueeze(1))
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_tversky_matches_monai(dims):
    from monai.losses import TverskyLoss as MonaiTversky

    logits, target = data(dims, seed=5)
    ours = TverskyLoss(alpha=0.3, beta=0.7)(logits, target)
    ref = MonaiTversky(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7)(logits, target.unsqueeze(1))
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


def test_tversky_half_half_is_dice():
    logits, target = data(2, seed=9)
    assert TverskyLoss(alpha=0.5, beta=0.5)(logits, target).item() == pytest.approx(DiceLoss()(logits, target).item(), abs=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_focal_matches_monai_softmax_focal(dims):
    from monai.losses import FocalLoss as MonaiFocal

    logits, target = data(dims, seed=7)
    k = logits.shape[1]
    ours = FocalLoss(gamma=2.0)(logits, target)
    onehot = F.one_hot(target, k).movedim(-1, 1).float()
    # MONAI sums the per-class terms and averages over every element of the one-hot
    # tensor; ours averages per pixel (the usual definition), i.e. K times larger.
    ref = MonaiFocal(gamma=2.0, use_softmax=True, reduction="mean")(logits, onehot)
    assert ours.item() == pytest.approx(ref.item() * k, abs=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = data(2, seed=2)
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5, abs=1e-6)


def test_ignore_index_removes_pixels_from_every_loss():
    logits, target = data(2, seed=4)
    ignored = target.clone()
    ignored[:, :5] = 255
    for loss in (CrossEntropyLoss(), DiceLoss(), FocalLoss(), TverskyLoss(), DiceCELoss()):
        a = loss(logits, ignored)
        # changing the logits of ignored pixels must not change the loss
        noisy = logits.clone()
        noisy[:, :, :5] += 5 * torch.randn_like(noisy[:, :, :5])
        b = loss(noisy, ignored)
        assert a.item() == pytest.approx(b.item(), abs=1e-6), type(loss).__name__
        assert math.isfinite(a.item())


def test_cross_entropy_weights_and_smoothing_match_torch():
    logits, target = data(2, seed=6)
    w = [0.5, 1.0, 2.0, 1.5]
    ours = CrossEntropyLoss(class_weights=w, label_smoothing=0.1)(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)  # float32 on both sides


def test_empty_class_handling():
    logits, target = data(2, k=3, seed=8)
    target[target == 2] = 0  # class 2 absent from truth
    logits[:, 2] = -20  # and (almost) never predicted
    inc = DiceLoss(empty="include")(logits, target)
    exc = DiceLoss(empty="exclude")(logits, target)
    # with "include" the absent class scores ~perfect and pulls the loss down
    assert inc.item() < exc.item()
    probs = logits.softmax(1)
    per = []
    for c in (0, 1):
        for n in range(2):
            p, t = probs[n, c], (target[n] == c).float()
            per.append(1 - (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5))
    assert exc.item() == pytest.approx(torch.stack(per).mean().item(), abs=1e-5)


def test_build_loss_by_name_and_unknown_name():
    assert isinstance(build_loss("dicece", class_weights=[1, 2]), DiceCELoss)
    with pytest.raises(SegsuiteError, match="unknown loss 'lovasz'"):
        build_loss("lovasz")
