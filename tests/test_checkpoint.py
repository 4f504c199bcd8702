import json
import os

import pytest
import torch

from segsuite.core.checkpoint import (
    FORMAT_VERSION, ModelCard, load_checkpoint, read_card, save_checkpoint, save_training_state, load_training_state,
)
from segsuite.core.classmap import ClassMap
from segsuite.core.errors import InputFileError
from segsuite.core.models import build_model
from segsuite.core.models.pretrained import load_pretrained
from segsuite.core.plugins import load_plugins

REG = load_plugins(entry_points=False)


def small_model():
    torch.manual_seed(0)
    return build_model("segnet", 3, 3, registry=REG, widths=[8, 16])


def card_for(model) -> ModelCard:
    return ModelCard(model=model.card(), class_map=ClassMap(("bg", "road", "car")).to_dict(),
                     normalization={"mean": [0.5] * 3, "std": [0.25] * 3}, patch_size=[64, 64], domain=None,
                     metrics={"mean_iou": 0.5})


def test_round_trip_gives_identical_predictions(tmp_path):
    model = small_model().eval()
    path = save_checkpoint(tmp_path / "best.safetensors", model, card_for(model))
    ckpt = load_checkpoint(path)
    again = ckpt.build_model(registry=REG).eval()
    x = torch.randn(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)
    assert ckpt.card.classes.names == ("bg", "road", "car")
    assert ckpt.card.segsuite_version and ckpt.card.format_version == FORMAT_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]  # no temporary left behind


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickles_are_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"weight": Boom()}, evil)
    with pytest.raises(InputFileError, match="evil.pt: refused to load"):
        load_pretrained(small_model(), evil)
    with pytest.raises(InputFileError, match="evil.pt: a pickled PyTorch file, not a segsuite checkpoint"):
        load_checkpoint(evil)
    assert not (tmp_path / "PWNED").exists()


def test_newer_format_is_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    card = json.loads(card_for(small_model()).to_json())
    card["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"segsuite.card": json.dumps(card)})
    with pytest.raises(InputFileError, match="future.safetensors: checkpoint format 2 was written by a newer segsuite"):
        read_card(path)


def test_plain_safetensors_and_junk_are_not_checkpoints(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputFileError, match="without a segsuite model card; import plain weights with --pretrained"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(InputFileError, match="junk.safetensors: not a segsuite checkpoint"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(InputFileError, match="nothing.safetensors: checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_training_state_round_trip(tmp_path):
    model = small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    state = {"epoch": 3, "optimizer": opt.state_dict(), "rng": torch.get_rng_state()}
    save_training_state(tmp_path / "last.state.pt", state)
    back = load_training_state(tmp_path / "last.state.pt")
    assert back["epoch"] == 3 and torch.equal(back["rng"], state["rng"])


def test_import_torchvision_resnet_into_unet_with_4_channels(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)  # what torchvision's hub files contain
    model = build_model("unet", 4, 3, registry=REG, encoder="resnet18")
    report = load_pretrained(model, path)
    assert report.mapping == ("", "net.encoder.")
    assert report.adapted == ["net.encoder.conv1.weight (3 -> 4 input channels)"]
    assert "net.encoder.layer4.1.conv2.weight" in report.loaded
    assert any(k.startswith("net.decoder") for k in report.new)
    assert report.unused == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(model.net.encoder.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight)
    w = model.net.encoder.conv1.weight
    torch.testing.assert_close(w[:, :3], resnet.conv1.weight * 3 / 4)
    torch.testing.assert_close(w[:, 3], resnet.conv1.weight[:, 0] * 3 / 4)


def test_import_smp_model_and_replace_the_head(tmp_path):
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    src = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=5)
    path = tmp_path / "smp_unet.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = build_model("unet", 1, 2, registry=REG, encoder="resnet18", pretrained=str(path))
    report = model.pretrained_report
    assert report.mapping == ("", "net.")
    assert report.adapted == ["net.encoder.conv1.weight (3 -> 1 input channels)"]
    assert report.new == [
        "net.segmentation_head.0.weight (shape (5, 16, 3, 3) in file, (2, 16, 3, 3) in model)",
        "net.segmentation_head.0.bias (shape (5,) in file, (2,) in model)",
    ]
    torch.testing.assert_close(model.net.encoder.conv1.weight, src.encoder.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.net.decoder.blocks[0].conv1[0].weight, src.decoder.blocks[0].conv1[0].weight)
    assert "3 adapted" not in report.summary() and "1 adapted" in report.summary()


def test_import_torchvision_fcn_checkpoint(tmp_path):
    import torchvision

    src = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    path = tmp_path / "fcn.pth"
    torch.save({"model": src.state_dict()}, path)  # torchvision reference scripts wrap it like this
    model = build_model("fcn", 3, 4, registry=REG, encoder="resnet50")
    report = load_pretrained(model, path)
    assert report.mapping == ("", "net.")
    assert "net.backbone.layer4.2.conv3.weight" in report.loaded
    assert [n.split(" ")[0] for n in report.new] == ["net.classifier.4.weight", "net.classifier.4.bias"]
    assert any(u.startswith("aux_classifier") for u in report.unused)


def test_unrelated_weights_are_refused(tmp_path):
    torch.save({"foo.bar": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(InputFileError, match="no tensor matches this model"):
        load_pretrained(small_model(), tmp_path / "w.pt")
