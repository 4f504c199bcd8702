"""DDRNet, the two-branch real-time network (issue #17): any input size, auxiliary head in training
only, the trainer's weighted auxiliary loss, verified ONNX/TorchScript export, ONNX Runtime runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, assert_one_line_error
from segsuite.core.aux_loss import supervised_loss
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.errors import SegsuiteError
from segsuite.core.models import build_model, list_models
from segsuite.core.models.base import AuxLogits
from segsuite.core.models.ddrnet import AUX_WEIGHT
from segsuite.core.plugins import load_plugins

REG = load_plugins(entry_points=False)
DRIVING = ROOT / "sample_data" / "driving"


def ddrnet(in_channels: int = 3, classes: int = 5, **options):
    torch.manual_seed(0)
    return build_model("ddrnet", in_channels, classes, registry=REG, **{"planes": 4, **options})


def test_listed_in_the_zoo(cli):
    entry = list_models("ddr*", registry=REG)
    assert [e.name for e in entry] == ["ddrnet"] and entry[0].spatial_dims == (2,)
    res = cli("models", "ddrnet")
    assert res.exit_code == 0 and res.stdout.startswith("ddrnet ") and "DDRNet-23-slim" in res.stdout


@pytest.mark.parametrize("size", [(45, 61), (1, 1), (130, 70), (64, 128)])
@pytest.mark.parametrize("in_channels", [1, 4])
def test_any_input_size_gives_logits_of_that_size(size, in_channels):
    model = ddrnet(in_channels, 7).eval()
    with torch.no_grad():
        y = model(torch.randn(2, in_channels, *size))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 7, *size) and torch.isfinite(y).all()
    assert model.stride == 64


def test_crop_back_returns_the_padded_inputs_logits():
    """An odd size is padded (replicating the border) to 64 and the logits cropped: exactly the
    top-left of what the network gives for the padded image."""
    model = ddrnet().eval()
    x = torch.randn(1, 3, 50, 100)
    with torch.no_grad():
        part = model(x)
        padded = model.net(F.pad(x, (0, 28, 0, 14), mode="replicate"))
    assert padded.shape[-2:] == (64, 128)
    torch.testing.assert_close(part, padded[..., :50, :100])


def test_width_multiplier_scales_parameters_and_slim_matches_the_paper():
    counts = {p: sum(t.numel() for t in ddrnet(3, 19, planes=p).parameters()) for p in (8, 16, 32)}
    # DDRNet-23-slim is 5.7 M parameters in the paper; each halving of the width quarters it
    assert 5.6e6 < counts[32] < 5.8e6
    assert 3.8 < counts[32] / counts[16] < 4.2 and 3.8 < counts[16] / counts[8] < 4.2
    with pytest.raises(SegsuiteError, match="planes=0 must be a whole number of at least 4"):
        ddrnet(planes=0)
    with pytest.raises(SegsuiteError, match="has no option 'width'"):
        build_model("ddrnet", 3, 2, registry=REG, width=2)


def test_auxiliary_head_only_in_training_mode():
    model = ddrnet(3, 6).train()
    x = torch.randn(2, 3, 45, 61)
    out = model(x)
    assert isinstance(out, AuxLogits) and out.weights == (AUX_WEIGHT,) == (0.4,)
    assert out.logits.shape == out.aux[0].shape == (2, 6, 45, 61)
    assert not torch.allclose(out.logits, out.aux[0])  # a separate head, not a copy
    model.eval()
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor)
    without = ddrnet(3, 6, aux_head=False).train()
    assert isinstance(without(x), torch.Tensor) and not any("aux" in n for n, _ in without.named_parameters())
    assert without.card()["options"] == {"planes": 4, "aux_head": False}


def test_supervised_loss_adds_the_weighted_auxiliary_loss():
    logits, aux = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, 0] = 255
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    expected = F.cross_entropy(logits, target, ignore_index=255) + 0.4 * F.cross_entropy(aux, target, ignore_index=255)
    torch.testing.assert_close(supervised_loss(ce, AuxLogits(logits, (aux,), (0.4,)), target), expected)
    torch.testing.assert_close(supervised_loss(ce, logits, target), F.cross_entropy(logits, target, ignore_index=255))
    half = supervised_loss(ce, AuxLogits(logits.half(), (aux.half(),), (0.4,)), target)
    assert half.dtype == torch.float32


def test_a_few_steps_with_the_auxiliary_loss_lower_it():
    model = ddrnet(3, 3).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 64, 64, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # learnable from the pixels themselves
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = supervised_loss(loss_fn, model(x), y)
        opt.zero_grad()
        loss.backward()
        assert model.net.aux.classify[-1].weight.grad.abs().sum() > 0  # the auxiliary head is trained
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_the_trainer_trains_the_auxiliary_head_and_ships_only_the_main_output(tmp_path):
    from segsuite.core import tasks
    from segsuite.core.checkpoint import load_checkpoint
    from segsuite.core.data.synthetic import SHAPES, make_shapes_dataset
    from segsuite.core.trainer import TrainConfig

    make_shapes_dataset(tmp_path / "train", n=8, size=(64, 64), seed=1)
    cfg = TrainConfig(model="ddrnet", model_options={"planes": 4}, epochs=2, batch_size=4, lr=5e-3, device="cpu",
                      tensorboard=False, augment=False)
    before = ddrnet(3, SHAPES.num_classes).net.aux.classify[-1].weight.detach().clone()
    result = tasks.train(tmp_path / "train", SHAPES, tmp_path / "run", cfg, val=tmp_path / "train", log=lambda m: None)
    ckpt = load_checkpoint(result.last_checkpoint)
    # the auxiliary head changes only through its own loss: proof that the trainer used it
    assert not torch.equal(ckpt.state_dict["net.aux.classify.2.weight"], before)
    assert ckpt.card.model == {"arch": "ddrnet", "in_channels": 3, "num_classes": SHAPES.num_classes,
                               "spatial_dims": 2, "options": {"planes": 4, "aux_head": True}}
    assert all(np.isfinite(r["train_loss"]) for r in result.history)


@pytest.fixture(scope="module")
def ddrnet_ckpt(tmp_path_factory):
    from segsuite.plugins.driving.classes import CITYSCAPES

    model = ddrnet(3, 19, planes=8).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the export sees realistic activations
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    card = ModelCard(model=model.card(), class_map=CITYSCAPES.to_dict(), domain="driving",
                     normalization={"kind": "zscore", "mean": [120.0] * 3, "std": [60.0] * 3})
    return save_checkpoint(tmp_path_factory.mktemp("ddr") / "ddrnet.safetensors", model, card)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_is_verified_without_the_auxiliary_head(ddrnet_ckpt, tmp_path, fmt):
    from segsuite.core.export import export_model

    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    report = export_model(ddrnet_ckpt, fmt, out)
    assert report["max_abs_diff"] <= 1e-3 and report["argmax_agreement"] >= 0.999 and report["stride"] == 64
    assert {tuple(c["size"]) for c in report["checks"]} == {(128, 192), (192, 192)}
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(out)).graph
        assert [o.name for o in graph.output] == ["logits"]
        dims = graph.output[0].type.tensor_type.shape.dim
        assert [dims[i].dim_param for i in (0, 2, 3)] == ["batch", "height", "width"]  # any size, any batch


def test_onnx_runtime_matches_pytorch_at_an_odd_size(ddrnet_ckpt, tmp_path):
    from segsuite.core.export import OnnxSegmentationModel, export_model
    from segsuite.core.infer import Predictor

    export_model(ddrnet_ckpt, "onnx", tmp_path / "m.onnx")
    onnx_pred = Predictor.from_checkpoint(tmp_path / "m.onnx")
    torch_pred = Predictor.from_checkpoint(ddrnet_ckpt, device="cpu")
    assert isinstance(onnx_pred.model, OnnxSegmentationModel) and onnx_pred.model.stride == 64
    image = np.random.default_rng(0).integers(0, 255, (3, 77, 131)).astype(np.uint8)  # padded to 128x192
    a, b = onnx_pred.logits(image), torch_pred.logits(image)
    assert a.shape == b.shape == (1, 19, 77, 131)
    assert float((a - b).abs().max()) < 1e-3
    assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.999


def test_run_driving_with_the_onnx_runtime_equals_torch(ddrnet_ckpt, tmp_path, cli):
    from segsuite.core.data.images import read_image
    from segsuite.core.export import export_model

    export_model(ddrnet_ckpt, "onnx", tmp_path / "m.onnx")
    frames = sorted((DRIVING / "frames").glob("*.png"))[:2]
    (tmp_path / "in").mkdir()
    for f in frames:
        shutil.copy(f, tmp_path / "in" / f.name)
    for runtime, model in (("onnx", tmp_path / "m.onnx"), ("torch", ddrnet_ckpt)):
        res = cli("run", "driving", "--input", tmp_path / "in", "--model", model, "--runtime", runtime,
                  "--output", tmp_path / runtime, "--device", "cpu")
        assert res.exit_code == 0, res.output
    for f in frames:
        name = f.name.replace("_leftImg8bit.png", "_labels.png")  # Cityscapes suffix dropped
        a, b = read_image(tmp_path / "onnx" / name).array, read_image(tmp_path / "torch" / name).array
        assert a.shape == (1, 128, 256) and (a == b).mean() >= 0.999
    assert_one_line_error(cli("run", "driving", "--input", tmp_path / "in", "--model", ddrnet_ckpt, "--runtime", "onnx"),
                          "--runtime onnx needs an .onnx file")


def test_bench_measures_it_by_name(cli):
    res = cli("bench", "--model", "ddrnet", "--size", "64x128", "--runs", "1", "--warmup", "0", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["model"] == "ddrnet" and r["size"] == [64, 128] and r["images_per_second"] > 0
