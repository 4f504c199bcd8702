"""Seg-Grad-CAM explanations: the maths, the automatic layer, a real model on a fresh scene, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from conftest import ROOT, assert_one_line_error
from segsuite.core.classmap import ClassMap
from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.errors import SegsuiteError
from segsuite.core.explain import default_layer, seg_grad_cam
from segsuite.core.hookspecs import hookimpl
from segsuite.core.infer import Predictor
from segsuite.core.models import build_model
from segsuite.core.models.base import SegmentationModel
from segsuite.core.pipeline import BasePipeline, Explains
from segsuite.core.plugins import load_plugins
from segsuite.plugins.satellite.synthetic import make_scenes

SAT = ROOT / "sample_data" / "satellite"


def linear_head_model(dims: int, seed: int = 0) -> SegmentationModel:
    """Features from a 3x3 convolution, then a 1x1 convolution to 3 classes (the head)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    net = nn.Sequential(conv(2, 6, 3, padding=1), nn.Tanh(), conv(6, 3, 1))
    return SegmentationModel(net, arch="test", in_channels=2, num_classes=3, spatial_dims=dims, stride=1,
                             encoder_prefix=None)


@pytest.mark.parametrize("dims", [2, 3])
def test_with_a_linear_head_the_map_is_the_positive_part_of_the_class_logit(dims):
    # score = sum over region M of (W_c . A + b_c), so every gradient is W_c on M: the weights are
    # W_c * |M| / |S| and the map is relu(W_c . A) = relu(logit_c - b_c), scaled to a peak of 1
    model = linear_head_model(dims)
    x = torch.randn(1, 2, *((12, 16) if dims == 2 else (6, 8, 10)))
    assert default_layer(model, x).name == "net.2:input"
    result = seg_grad_cam(model, x, 1)
    with torch.no_grad():
        logits = model(x)
    expected = torch.relu(logits[:, 1] - model.net[2].bias[1])
    expected = expected / expected.max()
    assert result.cam.shape == x.shape[:1] + x.shape[2:]
    assert torch.allclose(result.cam, expected, atol=1e-5)
    assert torch.equal(result.labels, logits.argmax(1))
    region_kind = "predicted" if bool((logits.argmax(1) == 1).any()) else "image"
    assert result.region == [region_kind] and result.layer == "net.2:input"
    # a named module's output: the Tanh's output is the same tensor the head sees
    assert torch.allclose(seg_grad_cam(model, x, 1, layer="net.1").cam, expected, atol=1e-5)


def test_a_class_predicted_nowhere_is_explained_over_the_whole_image():
    model = linear_head_model(2)
    with torch.no_grad():
        model.net[2].bias.copy_(torch.tensor([50.0, 0.0, -50.0]))  # class 0 wins everywhere
    result = seg_grad_cam(model, torch.randn(2, 2, 10, 10), 2)
    assert result.region == ["image", "image"]
    assert bool((result.labels == 0).all())


@pytest.mark.parametrize("arch, dims, options, layer", [
    ("resunet", 2, {"channels": [8, 16, 32], "num_res_units": 1}, "net.model.2.1.conv.unit0.conv:input"),
    ("unet3d", 3, {"channels": [4, 8, 16], "num_res_units": 1}, "net.model.2.1.conv.unit0.conv:input"),
    ("segnet", 2, {"widths": [8, 16], "convs": [1, 1]}, "net.classifier:input"),
    ("segnet", 3, {"widths": [4, 8], "convs": [1, 1]}, "net.classifier:input"),
    ("unet", 2, {"encoder": "resnet18"}, "net.segmentation_head.0:input"),
    ("bnunet", 2, {"channels": [8, 16, 32]}, None),
    ("bnunet", 3, {"channels": [4, 8, 16]}, None),
    ("fcn", 2, {"encoder": "resnet18"}, "net.encoder.layer2"),  # its head sees 1/32 of the input: the last 1/8 map instead
])
def test_default_layer_for_registry_models_in_2d_and_3d(arch, dims, options, layer):
    torch.manual_seed(0)
    model = build_model(arch, 2, 3, spatial_dims=dims, registry=load_plugins(entry_points=False), **options).eval()
    x = torch.randn(1, 2, *((64, 64) if dims == 2 else (16, 16, 16)))
    info = default_layer(model, x)
    assert layer is None or info.name == layer
    assert all(s * 8 >= n for s, n in zip(info.shape[2:], x.shape[2:]))
    result = seg_grad_cam(model, x, 1)
    assert result.cam.shape == (1, *x.shape[2:])
    assert 0.0 <= float(result.cam.min()) and float(result.cam.max()) <= 1.0
    assert result.normalised_after == []  # the default is never before an instance norm
    assert not any(m.training for m in model.modules())


def test_bad_layers_are_clear_errors():
    model = linear_head_model(2)
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(SegsuiteError, match="has no layer 'net.7'"):
        seg_grad_cam(model, x, 0, layer="net.7")
    with pytest.raises(SegsuiteError, match="outside the model's 3 classes"):
        seg_grad_cam(model, x, 5)


@pytest.fixture(scope="module")
def fresh_scene(tmp_path_factory):
    """A scene the shipped model never saw, with its true labels."""
    root = make_scenes(tmp_path_factory.mktemp("scenes"), n=1, size=(192, 256), seed=41)
    return root / "images" / "scene_000.tif", root / "masks" / "scene_000.tif"


@pytest.mark.parametrize("class_name, least", [("water", 0.5), ("vegetation", 0.8), ("building", 0.2), ("road", 0.5)])
def test_the_map_concentrates_on_the_true_region_of_the_class(fresh_scene, class_name, least):
    image_path, label_path = fresh_scene
    predictor = Predictor.from_checkpoint(SAT / "model.safetensors", device="cpu")
    with rasterio.open(image_path) as src, rasterio.open(label_path) as lab:
        image = src.read().astype(np.float32)
        truth = lab.read(1)
        nodata = src.nodata
    index = list(predictor.class_map.names).index(class_name)
    valid = ~np.all(image == nodata, axis=0) if nodata is not None else np.ones(truth.shape, bool)
    x = predictor.prepare(image)
    x[:, :, ~torch.from_numpy(valid)] = 0.0
    result = seg_grad_cam(predictor.model, x, index, valid=torch.from_numpy(valid)[None])
    inside = (truth == index) & valid
    share = inside.sum() / valid.sum()
    mass = result.mass_inside(inside[None])[0]
    assert result.region == ["predicted"]
    assert mass >= least and mass > 4 * share, (mass, share)  # measured 0.55, 0.90, 0.40, 0.74 on 4.6, 21, 2.3, 9.7 % of the area


def test_explain_cli_writes_heatmap_overlay_and_json(tmp_path, cli):
    from segsuite.core.data.images import read_image_array

    res = cli("explain", "satellite", "--input", SAT / "scene.tif", "--class", "water", "--output", tmp_path / "out",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "out" / "scene_water_cam.json").read_text())
    assert record["class"] == "water" and record["region"] == "predicted" and record["layer_auto"] is True
    assert record["layer"].endswith(":input") and record["crop"] is None
    assert record["cam_mass_inside_predicted"] > 0.6 > 3 * record["predicted_fraction"]
    heat = read_image_array(tmp_path / "out" / "scene_water_cam.png")
    over = read_image_array(tmp_path / "out" / "scene_water_cam_overlay.png")
    assert heat.shape == over.shape == (384, 512, 3)
    # a large scene is explained on its centre crop, and the crop is recorded
    res = cli("explain", "satellite", "--input", SAT / "scene.tif", "--class", "Road", "--output", tmp_path / "crop",
              "--device", "cpu", "--max-size", "200", "--layer", "net.down.1")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "crop" / "scene_road_cam.json").read_text())
    assert record["crop"] == [92, 156, 200, 200] and record["size"] == [200, 200]
    assert record["layer"] == "net.down.1" and record["layer_auto"] is False
    assert "caveat" not in record  # batch norm in eval mode keeps where things are (instance norm would not)


def test_a_layer_before_an_instance_norm_gets_a_caveat():
    torch.manual_seed(0)
    model = build_model("resunet", 2, 3, registry=load_plugins(entry_points=False), channels=[8, 16, 32],
                        num_res_units=1).eval()
    result = seg_grad_cam(model, torch.randn(1, 2, 64, 64), 1, layer="net.model.1")
    assert result.normalised_after  # the JSON's "caveat" is written from this


def test_explain_cli_class_predicted_nowhere(tmp_path, cli):
    good = ROOT / "sample_data" / "industrial" / "parts" / "images" / "good_005.png"
    res = cli("explain", "industrial", "--input", good, "--class", "crack", "--output", tmp_path, "--device", "cpu")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "good_005_crack_cam.json").read_text())
    assert record["region"] == "image" and record["predicted_pixels"] == 0
    assert record["cam_mass_inside_predicted"] is None and "predicted nowhere" in res.stdout


def test_explain_cli_errors(tmp_path, cli):
    scene = SAT / "scene.tif"
    assert_one_line_error(cli("explain", "satellite", "--input", scene, "--class", "lava", "--output", tmp_path / "a"),
                          "unknown class 'lava'", "background, water, vegetation, building, road")
    assert not (tmp_path / "a").exists()
    assert_one_line_error(cli("explain", "satellite", "--input", scene, "--class", "water", "--layer", "net.model.9",
                              "--output", tmp_path / "b"), "no layer 'net.model.9'")
    assert_one_line_error(cli("explain", "nosuchdomain", "--input", scene, "--class", "water"), "nosuchdomain")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert_one_line_error(cli("explain", "satellite", "--input", scene, "--class", "water", "--model", onnx),
                          "pass the .safetensors checkpoint")
    assert cli("explain", "satellite", "--input", scene).exit_code == 2  # --class is required


class _VolumeExplainer(BasePipeline):
    """What a 3D domain's explainer pipeline gets from the executor."""

    calls: list = []

    def __init__(self, class_name, layer):
        self.class_name, self.layer = class_name, layer

    def load(self, checkpoint, options, device):
        return (checkpoint, device)

    def outputs(self, source, stem, folder, options, file=None):
        return {"cam": folder / f"{stem}_{self.class_name}_cam.vol", "record": folder / f"{stem}_{self.class_name}_cam.json"}

    def run_one(self, source, outputs, context):
        _VolumeExplainer.calls.append((source, context.model, self.class_name, self.layer, Path(outputs["cam"]).name))
        Path(outputs["cam"]).write_bytes(b"cam")
        return {"class": self.class_name}

    def describe(self, record):
        return f"{record['input']}: {record['class']}"


class _VolumePipeline(BasePipeline):
    """A 3D domain whose pipeline explains its own inputs (Explains), as the medical domain does."""

    suffixes = (".vol",)

    def load(self, checkpoint, options, device):
        raise AssertionError("explain must use the explainer, not the run pipeline")

    def outputs(self, source, stem, folder, options, file=None):
        return {}

    def run_one(self, source, outputs, context):
        return {}

    def describe(self, record):
        return ""

    def explainer(self, class_name, layer):
        return _VolumeExplainer(class_name, layer)


class _VolumePlugin:
    @hookimpl
    def segsuite_domains(self):
        return [Domain(name="volumes", description="test volumes", spatial_dims=3, in_channels=1,
                       class_maps={"x": ClassMap(("bg", "organ"))}, default_model=ModelSpec("unet3d"),
                       patch_size=(32, 32, 32), readers={".vol": lambda p: None}, pipeline=_VolumePipeline())]


def test_a_pipeline_that_explains_does_the_explaining(tmp_path, cli):
    assert isinstance(_VolumePipeline(), Explains)
    (tmp_path / "a.vol").write_bytes(b"")
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"")
    registry = load_plugins(entry_points=False, extra=[("volumes", _VolumePlugin())])
    res = cli("explain", "volumes", "--input", tmp_path / "a.vol", "--class", "organ", "--model", ckpt, "--output",
              tmp_path / "out", "--device", "cpu", "--layer", "enc.1", registry=registry)
    assert res.exit_code == 0, res.output
    assert _VolumeExplainer.calls == [(tmp_path / "a.vol", (ckpt, "cpu"), "organ", "enc.1", "a_organ_cam.vol")]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"][0]["status"] == "ok"
    res = cli("explain", "volumes", "--input", tmp_path / "a.vol", "--class", "organ", "--model", ckpt, "--max-size", "64",
              registry=load_plugins(entry_points=False, extra=[("volumes", _VolumePlugin())]))
    assert_one_line_error(res, "do not take --max-size")


@pytest.mark.parametrize("domain, image, class_name", [
    ("driving", ROOT / "sample_data" / "driving" / "frames" / "synthville_000007_000001_leftImg8bit.png", "car"),
    ("industrial", ROOT / "sample_data" / "industrial" / "parts" / "images" / "ng_002.png", "scratch"),
])
def test_explanations_concentrate_on_the_class_in_the_2d_image_domains(tmp_path, cli, domain, image, class_name):
    res = cli("explain", domain, "--input", image, "--class", class_name, "--output", tmp_path, "--device", "cpu")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / f"{image.stem}_{class_name}_cam.json").read_text())
    assert record["region"] == "predicted"
    # the class covers a few % of the image at most; the map's mass on it is many times that
    assert record["predicted_fraction"] < 0.05
    assert record["cam_mass_inside_predicted"] > 5 * record["predicted_fraction"], record
