"""Uncertainty maps: entropy, flip-TTA and MC-dropout spread, through the Predictor and `segsuite run`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.classmap import ClassMap
from segsuite.core.data.images import read_image_array, write_image
from segsuite.core.errors import SegsuiteError
from segsuite.core.infer import Predictor, SlidingWindow
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins
from segsuite.core.uncertainty import SampleSpread, dropout_modules, entropy, flip_sets, sample_variance

SAT_MODEL = ROOT / "sample_data" / "satellite" / "model.safetensors"


def test_entropy_is_zero_for_one_hot_and_one_for_uniform_in_2d_and_3d():
    for spatial in ((5, 6), (3, 4, 5)):
        probs = torch.zeros(2, 4, *spatial)
        probs[0, 2] = 1.0
        probs[1] = 0.25
        h = entropy(probs)
        assert h.shape == (2, *spatial)
        assert torch.allclose(h[0], torch.zeros(spatial)) and torch.allclose(h[1], torch.ones(spatial))
    two = torch.tensor([0.9, 0.1]).view(1, 2, 1, 1)
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert float(entropy(two)) == pytest.approx(expected, rel=1e-5)


def test_sample_spread_is_zero_when_samples_agree_and_one_for_evenly_split_votes():
    same = torch.softmax(torch.randn(1, 3, 4, 4, 4), 1)
    assert torch.allclose(sample_variance(torch.stack([same] * 5)), torch.zeros(1, 4, 4, 4), atol=1e-6)
    votes = torch.stack([torch.nn.functional.one_hot(torch.full((1, 2, 2), c), 3).permute(0, 3, 1, 2).float() for c in range(3)])
    assert torch.allclose(sample_variance(votes), torch.ones(1, 2, 2))
    two_of_three = sample_variance(votes[:2])  # split between two of three classes: less than the maximum
    assert 0.5 < float(two_of_three.mean()) < 1.0
    spread = SampleSpread()
    spread.add(votes[0], logits=torch.zeros(1, 3, 2, 2))
    spread.add(votes[1], logits=torch.ones(1, 3, 2, 2))
    assert torch.allclose(spread.mean_logits(), torch.full((1, 3, 2, 2), 0.5))
    assert flip_sets(2) == [(), (2,), (3,), (2, 3)] and len(flip_sets(3)) == 8 and flip_sets(2, (1,)) == [(), (3,)]


@pytest.fixture(scope="module")
def satellite_inputs():
    with rasterio.open(ROOT / "sample_data" / "satellite" / "scene.tif") as src:
        clear = src.read().astype(np.float32)[:, 96:352, 128:384]  # inside the nodata border
    rng = np.random.default_rng(0)
    noisy = clear.copy()
    box = (slice(64, 192), slice(64, 192))
    mean = clear.reshape(4, -1).mean(1)[:, None, None]
    std = clear.reshape(4, -1).std(1)[:, None, None]
    noisy[(slice(None), *box)] = (mean + std * rng.standard_normal((4, 128, 128)))
    mask = np.zeros(clear.shape[1:], bool)
    mask[box] = True
    return clear, noisy, mask


@pytest.mark.parametrize("method", ["entropy", "tta"])
def test_shipped_model_is_more_uncertain_on_noise_than_on_the_clear_scene(satellite_inputs, method):
    clear, noisy, box = satellite_inputs
    predictor = Predictor.from_checkpoint(SAT_MODEL, device="cpu")
    predictor.window = SlidingWindow((128, 128), overlap=0.25, batch_size=4)  # the blended path
    probs, u_clear = predictor.probabilities_and_uncertainty(clear, method)
    _, u_noisy = predictor.probabilities_and_uncertainty(noisy, method)
    assert probs.shape == (1, 5, 256, 256) and u_clear.shape == (1, 256, 256)
    assert torch.allclose(probs.sum(1), torch.ones(1, 256, 256), atol=1e-5)
    for u in (u_clear, u_noisy):
        assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    in_noise = float(u_noisy[0][torch.from_numpy(box)].mean())
    same_place_clear = float(u_clear[0][torch.from_numpy(box)].mean())
    outside = float(u_noisy[0][torch.from_numpy(~box)].mean())
    assert in_noise > 3 * same_place_clear and in_noise > 3 * outside, (in_noise, same_place_clear, outside)


def test_tta_probabilities_are_those_of_the_flip_averaged_prediction(satellite_inputs):
    clear = satellite_inputs[0][:, :96, :96]
    predictor = Predictor.from_checkpoint(SAT_MODEL, device="cpu")
    probs, _ = predictor.probabilities_and_uncertainty(clear, "tta")
    predictor.tta = True
    assert torch.allclose(probs, predictor.probabilities(clear), atol=1e-5)
    predictor.tta = False
    probs, h = predictor.probabilities_and_uncertainty(clear, "entropy")
    assert torch.allclose(probs, predictor.probabilities(clear)) and torch.allclose(h, entropy(probs))


def _toy_batch(rng: np.random.Generator, n: int = 8, side: int = 48):
    x = np.zeros((n, 1, side, side), np.float32)
    y = np.zeros((n, side, side), np.int64)
    for i in range(n):
        for _ in range(3):
            r, c = rng.integers(0, side - 12, 2)
            h, w = rng.integers(6, 16, 2)
            x[i, 0, r : r + h, c : c + w] = 1.0
            y[i, r : r + h, c : c + w] = 1
    x += 0.1 * rng.standard_normal(x.shape).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.fixture(scope="module")
def dropout_predictor():
    """A small U-Net with dropout, trained for a second or two: bright squares are foreground."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("resunet", 1, 2, registry=load_plugins(entry_points=False), channels=[8, 16], num_res_units=1,
                        dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(60):
        x, y = _toy_batch(rng, side=32)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Predictor(model, device="cpu", class_map=ClassMap.from_names("background,square"))


def test_mc_dropout_and_entropy_are_higher_on_an_ambiguous_square(dropout_predictor):
    image = np.zeros((1, 48, 96), np.float32)
    image[0, 12:36, 12:36] = 1.0  # clearly foreground
    image[0, 12:36, 60:84] = 0.5  # halfway between the two classes it was trained on
    clear = np.zeros((48, 96), bool)
    clear[12:36, 12:36] = True
    ambiguous = np.zeros((48, 96), bool)
    ambiguous[12:36, 60:84] = True
    for method in ("mcdropout", "entropy"):
        _, u = dropout_predictor.probabilities_and_uncertainty(image, method)
        u = u[0].numpy()
        assert u[ambiguous].mean() > 3 * u[clear].mean(), (method, u[ambiguous].mean(), u[clear].mean())


def test_mc_dropout_is_repeatable_and_leaves_model_and_rng_as_they_were(dropout_predictor):
    image = np.random.default_rng(1).random((1, 40, 40)).astype(np.float32)
    state = torch.random.get_rng_state()
    _, a = dropout_predictor.probabilities_and_uncertainty(image, "mcdropout", samples=4)
    _, b = dropout_predictor.probabilities_and_uncertainty(image, "mcdropout", samples=4)
    assert torch.equal(a, b) and float(a.max()) > 0
    assert torch.equal(torch.random.get_rng_state(), state)
    assert dropout_modules(dropout_predictor.model) and not any(m.training for m in dropout_predictor.model.modules())


def test_mc_dropout_without_dropout_layers_is_a_clear_error():
    predictor = Predictor.from_checkpoint(SAT_MODEL, device="cpu")
    with pytest.raises(SegsuiteError, match="has none"):
        predictor.probabilities_and_uncertainty(np.zeros((4, 32, 32), np.float32), "mcdropout")
    with pytest.raises(SegsuiteError, match="choose one of entropy, tta, mcdropout"):
        predictor.probabilities_and_uncertainty(np.zeros((4, 32, 32), np.float32), "variance")


def test_3d_volumes_get_a_voxel_map():
    torch.manual_seed(0)
    model = build_model("unet3d", 1, 3, spatial_dims=3, registry=load_plugins(entry_points=False), channels=[4, 8],
                        num_res_units=0)
    predictor = Predictor(model, device="cpu", window=SlidingWindow((16, 16, 16), overlap=0.5, batch_size=2))
    volume = np.random.default_rng(0).random((1, 20, 24, 18)).astype(np.float32)
    for method in ("entropy", "tta"):
        probs, u = predictor.probabilities_and_uncertainty(volume, method)
        assert probs.shape == (1, 3, 20, 24, 18) and u.shape == (1, 20, 24, 18)
        assert 0.0 <= float(u.min()) and float(u.max()) <= 1.0


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    """A 2D model outside any domain: `segsuite run` takes the generic image path."""
    torch.manual_seed(0)
    model = build_model("segnet", 3, 3, registry=load_plugins(entry_points=False), widths=[8, 8])
    card = ModelCard(model=model.card(), class_map={"names": ["bg", "a", "b"]}, domain=None,
                     normalization={"kind": "zscore", "mean": [120.0] * 3, "std": [60.0] * 3})
    return save_checkpoint(tmp_path_factory.mktemp("m") / "plain.safetensors", model, card)


def test_run_generic_path_writes_heatmap_float_map_and_summary(plain_checkpoint, tmp_path, cli):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "img.png", rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    res = cli("run", "--model", plain_checkpoint, "--input", tmp_path / "in", "--output", tmp_path / "out",
              "--device", "cpu", "--uncertainty", "tta")
    assert res.exit_code == 0, res.output
    heat = read_image_array(tmp_path / "out" / "img_uncertainty.png")
    values = read_image_array(tmp_path / "out" / "img_uncertainty.tif")
    assert heat.shape == (40, 56, 3) and values.shape == (40, 56) and values.dtype == np.float32
    assert 0.0 <= values.min() and values.max() <= 1.0
    summary = json.loads((tmp_path / "out" / "img.json").read_text())["uncertainty"]
    assert summary["method"] == "tta" and summary["mean"] == pytest.approx(float(values.mean()), abs=1e-4)
    res = cli("run", "--model", plain_checkpoint, "--input", tmp_path / "in", "--output", tmp_path / "out2",
              "--uncertainty", "variance")
    assert_one_line_error(res, "--uncertainty 'variance': choose one of entropy, tta, mcdropout")
    assert not (tmp_path / "out2").exists()
    res = cli("run", "--model", plain_checkpoint, "--input", tmp_path / "in", "--output", tmp_path / "out3",
              "--uncertainty", "mcdropout")
    assert_one_line_error(res, "MC dropout needs a model with dropout layers")
    assert not (tmp_path / "out3").exists()
