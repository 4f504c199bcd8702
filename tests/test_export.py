"""Export to ONNX / TorchScript, verified against PyTorch; ONNX Runtime inference; latency bench."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error
from segsuite.core.checkpoint import ModelCard, save_checkpoint
from segsuite.core.classmap import ClassMap
from segsuite.core.export import OnnxSegmentationModel, export_model
from segsuite.core.infer import Predictor
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins

SAT = ROOT / "sample_data" / "satellite"


@pytest.fixture(scope="module")
def lraspp_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3", 3, 4, registry=load_plugins(entry_points=False)).eval()
    card = ModelCard(model=model.card(), class_map=ClassMap(("road", "car", "person", "sky")).to_dict(),
                     normalization={"kind": "zscore", "mean": [120.0] * 3, "std": [60.0] * 3})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "rt.safetensors", model, card)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_is_verified_and_carries_the_card(lraspp_ckpt, tmp_path, fmt):
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    report = export_model(lraspp_ckpt, fmt, out)
    assert out.exists() and report["max_abs_diff"] <= 1e-3 and report["argmax_agreement"] >= 0.999
    assert len(report["checks"]) == 2 and report["checks"][0]["size"] != report["checks"][1]["size"]
    if fmt == "torchscript":
        extra = {"segsuite_card.json": ""}
        torch.jit.load(str(out), _extra_files=extra)
        assert json.loads(extra["segsuite_card.json"])["class_map"]["names"][1] == "car"


def test_onnx_runtime_matches_pytorch_at_any_size(lraspp_ckpt, tmp_path):
    export_model(lraspp_ckpt, "onnx", tmp_path / "m.onnx")
    onnx_pred = Predictor.from_checkpoint(tmp_path / "m.onnx")
    torch_pred = Predictor.from_checkpoint(lraspp_ckpt, device="cpu")
    assert isinstance(onnx_pred.model, OnnxSegmentationModel) and onnx_pred.class_map.names[3] == "sky"
    image = np.random.default_rng(0).integers(0, 255, (3, 77, 131)).astype(np.uint8)  # not a multiple of 16
    a, b = onnx_pred.logits(image), torch_pred.logits(image)
    assert a.shape == b.shape == (1, 4, 77, 131)
    assert float((a - b).abs().max()) < 1e-3
    assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.999


def test_run_with_the_onnx_runtime(tmp_path, cli):
    export_model(SAT / "model.safetensors", "onnx", tmp_path / "sat.onnx")
    shutil.copy(SAT / "scene.tif", tmp_path / "scene.tif")
    res = cli("run", "satellite", "--input", tmp_path / "scene.tif", "--model", tmp_path / "sat.onnx",
              "--runtime", "onnx", "--output", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "scene_classes.tif").exists()
    assert_one_line_error(cli("run", "satellite", "--input", tmp_path / "scene.tif", "--model", SAT / "model.safetensors",
                              "--runtime", "onnx"), "--runtime onnx needs an .onnx file", "segsuite export")
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    assert_one_line_error(cli("run", "satellite", "--input", tmp_path / "scene.tif", "--model", tmp_path / "bad.onnx"),
                          "bad.onnx: not a loadable ONNX model")


def test_export_cli_and_errors(tmp_path, cli):
    res = cli("export", "--model", SAT / "model.safetensors", "--format", "onnx", "--output", tmp_path / "s.onnx")
    assert res.exit_code == 0, res.output
    assert "argmax agreement 100.000 %" in res.stdout and (tmp_path / "s.onnx").exists()
    assert_one_line_error(cli("export", "--model", tmp_path / "none.safetensors"), "none.safetensors: checkpoint not found")


def test_bench_prints_conditions_with_every_number(cli):
    res = cli("bench", "--model", "segnet", "--size", "64x96", "--runs", "2", "--warmup", "1", "--classes", "3")
    assert res.exit_code == 0, res.output
    line = res.stdout.strip()
    for part in ("segnet", "torch", "CPU", "fp32", "64x96", "batch 1", "ms", "images/s"):
        assert part in line
    res = cli("bench", "--model", "segnet", "--size", "64x96", "--runs", "2", "--json")
    assert json.loads(res.stdout)["device"] == "cpu"
    assert_one_line_error(cli("bench", "--precision", "bf16"), "needs a CUDA device")
    assert_one_line_error(cli("bench", "--size", "big"), "--size 'big' must look like 512x1024")
    assert_one_line_error(cli("bench", "--video", "x.mp4"), "x.mp4: video (--video) not found")
    video = ROOT / "sample_data" / "driving" / "drive.mp4"
    res = cli("bench", "--model", ROOT / "sample_data" / "driving" / "model.safetensors", "--video", video, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "video end to end" in res.stdout and "128x256" in res.stdout and "30 frames" in res.stdout
