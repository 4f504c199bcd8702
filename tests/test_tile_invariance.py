"""A user who changes --tile to fit memory gets the same map: the shipped 2D defaults of the domains
that cut images into windows (satellite, industrial) give (nearly) the same labels with small windows
as with one whole-image window, on their own samples and on generated imagery unlike their training
data. (Networks that normalise with the window's own statistics, e.g. instance norm, fail this:
36-54 % of the labels changed.) Driving frames are never cut into windows: the default DDRNet
pools context over the whole frame by design (1/64 branch, global mean in DAPPM), so windows would
change its answer (97.5 % agreement at 64 px windows on the sample); the last test holds the
driving pipeline to whole frames."""

from pathlib import Path

import numpy as np
import pytest
import torch

from segsuite.core.data.images import read_image
from segsuite.core.data.synthetic import unfamiliar_image
from segsuite.core.infer import Predictor, SlidingWindow

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def _own_sample(domain: str) -> np.ndarray:
    if domain == "satellite":
        import rasterio

        with rasterio.open(SAMPLES / "satellite" / "scene.tif") as src:
            return src.read().astype(np.float32)
    folder = {"industrial": "parts/images", "driving": "frames"}[domain]
    image = read_image(sorted((SAMPLES / domain / folder).glob("*.png"))[-1])
    return np.asarray(image.array, np.float32)


def _agreement(predictor: Predictor, image: np.ndarray, tile: int, overlap: int) -> float:
    predictor.window = None
    whole = predictor.predict(image)
    predictor.window = SlidingWindow((tile, tile), overlap=overlap / tile, batch_size=4)
    small = predictor.predict(image)
    return float((whole == small).float().mean())


@pytest.mark.parametrize("domain", ["satellite", "industrial"])
def test_small_windows_agree_with_one_window(domain):
    path = SAMPLES / domain / "model.safetensors"
    if not path.exists():
        pytest.skip(f"no shipped {domain} model")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    card = predictor.card
    own = _own_sample(domain)
    if own.ndim == 2:
        own = own[None]
    tile = min(256, max(64, min(own.shape[1:]) // 2))  # several windows across the sample
    assert _agreement(predictor, own, tile, tile // 8) >= 0.995
    norm = card.normalization
    odd = unfamiliar_image((512, 512), card.model["in_channels"], norm["mean"], norm["std"], seed=3)
    assert _agreement(predictor, odd, 256, 32) >= 0.98


def test_driving_frames_are_segmented_whole(tmp_path, cli):
    """`run driving` labels equal the network on the whole frame, which differ from windowed ones."""
    frame = sorted((SAMPLES / "driving" / "frames").glob("*.png"))[-1]
    res = cli("run", "driving", "--input", frame, "--output", tmp_path, "--device", "cpu")
    assert res.exit_code == 0, res.output
    written = read_image(tmp_path / frame.name.replace("_leftImg8bit.png", "_labels.png")).array[0]
    predictor = Predictor.from_checkpoint(SAMPLES / "driving" / "model.safetensors", device="cpu")
    own = _own_sample("driving")
    whole = predictor.predict(own)[0].numpy()
    assert np.array_equal(written, whole)
    assert _agreement(predictor, own, 64, 8) < 1.0  # windows would have changed labels
