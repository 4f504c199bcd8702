import pytest
import torch

from segsuite.core.errors import SegsuiteError, UnknownNameError
from segsuite.core.models import build_model, list_models
from segsuite.core.plugins import load_plugins

REG = load_plugins(entry_points=False)

CASES = [
    ("unet", {"encoder": "resnet18"}),
    ("unet", {"encoder": "mobilenet_v2"}),
    ("fcn", {"encoder": "resnet50"}),
    ("fcn", {"encoder": "resnet18"}),
    ("deeplabv3", {"encoder": "resnet18", "output_stride": 8}),
    ("deeplabv3", {"encoder": "mobilenet_v2", "output_stride": 16}),
    ("deeplabv3plus", {"encoder": "resnet18", "output_stride": 16}),
    ("pspnet", {"encoder": "resnet18"}),
    ("segnet", {"widths": [16, 32, 64, 64, 64]}),
    ("lraspp_mobilenet_v3", {}),
    ("bnunet", {}),
    ("bnunet", {"channels": [8, 16], "units": 2, "dropout": 0.1}),
]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{o.get('encoder', '')}" for n, o in CASES])
@pytest.mark.parametrize("in_channels", [1, 4])
def test_any_size_any_channels_any_classes(name, options, in_channels):
    model = build_model(name, in_channels, 7, registry=REG, **options).eval()
    x = torch.randn(2, in_channels, 45, 61)  # sides not multiples of any stride
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7, 45, 61)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name, options", [("unet", {"channels": [8, 16, 32]}), ("segnet", {"widths": [8, 16, 32]}),
                                           ("bnunet", {"channels": [8, 16, 32]})])
def test_3d_models(name, options):
    model = build_model(name, 1, 3, spatial_dims=3, registry=REG, **options).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 13, 17, 19))
    assert y.shape == (1, 3, 13, 17, 19)
    assert model.arch == ("unet3d" if name == "unet" else name)


def test_padding_does_not_change_the_prediction_inside():
    """Cropping back must return exactly the logits of the valid region, not a shifted copy."""
    torch.manual_seed(0)
    model = build_model("segnet", 1, 2, registry=REG, widths=[4, 4]).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        full = model(x)
        # 15x15 gets padded to 16x16 by replicating the last row/column
        part = model(x[..., :15, :15])
        rep = model(torch.nn.functional.pad(x[..., :15, :15], (0, 1, 0, 1), mode="replicate"))
    assert part.shape[-2:] == (15, 15)
    torch.testing.assert_close(part, rep[..., :15, :15])
    assert not torch.equal(full[..., :15, :15], rep[..., :15, :15])  # the padded content matters, and is replicate


def test_freeze_and_unfreeze_encoder():
    model = build_model("unet", 3, 2, registry=REG, encoder="resnet18")
    n = model.freeze_encoder()
    assert n > 0
    assert all(not p.requires_grad for p in model.encoder_parameters())
    assert any(p.requires_grad for n_, p in model.named_parameters() if n_.startswith("net.decoder"))
    model.train()
    assert not model.net.encoder.bn1.training  # frozen BatchNorm statistics stay put
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.encoder_parameters())


def test_errors_are_clear():
    with pytest.raises(UnknownNameError, match="unknown model 'unet3' \\(did you mean unet3d, unet"):
        build_model("unet3", 3, 2, registry=REG)
    with pytest.raises(SegsuiteError, match="model 'deeplabv3' is 2D only"):
        build_model("deeplabv3", 1, 2, spatial_dims=3, registry=REG)
    with pytest.raises(SegsuiteError, match="has no option 'encoderr'"):
        build_model("unet", 3, 2, registry=REG, encoderr="resnet18")
    with pytest.raises(UnknownNameError, match="unknown encoder 'resnet19'"):
        build_model("unet", 3, 2, registry=REG, encoder="resnet19")
    with pytest.raises(SegsuiteError, match="output_stride must be 8 or 16"):
        build_model("deeplabv3", 3, 2, registry=REG, encoder="resnet18", output_stride=32)


def test_listing_with_wildcards():
    names = [e.name for e in list_models("deeplab*", registry=REG)]
    assert names == ["deeplabv3", "deeplabv3plus"]
    all_names = {e.name for e in list_models(registry=REG)}
    assert {"fcn", "unet", "unet3d", "pspnet", "deeplabv3", "deeplabv3plus", "segnet", "lraspp_mobilenet_v3"} <= all_names


def test_plugin_models_are_buildable():
    import pluggy
    from torch import nn

    hookimpl = pluggy.HookimplMarker("segsuite")

    class TinyPlugin:
        @staticmethod
        @hookimpl
        def segsuite_models():
            def tiny(in_channels, num_classes, spatial_dims=2, width=4):
                """A 1x1-conv model."""
                return nn.Conv2d(in_channels, num_classes, 1)
            return {"tiny": tiny}

    reg = load_plugins(entry_points=False, extra=[("tinyplug", TinyPlugin())])
    model = build_model("tiny", 3, 5, registry=reg, width=8)
    assert model(torch.randn(1, 3, 7, 9)).shape == (1, 5, 7, 9)
    entry = {e.name: e for e in list_models(registry=reg)}["tiny"]
    assert entry.source == "plugin tinyplug" and entry.description == "A 1x1-conv model."


def test_bnunet_logits_do_not_depend_on_what_else_is_in_the_window():
    """Batch norm in eval mode: the logits of a region far from the window's edge are the same
    whether the rest of the window is dark, bright or noise (instance norm would shift them)."""
    torch.manual_seed(0)
    model = build_model("bnunet", 1, 3, registry=REG).eval()
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[..., 40:, :] = 25.0  # a bright band well outside the receptive field of the top rows
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[..., :8, :], b[..., :8, :], rtol=1e-5, atol=1e-5)
    norm_model = build_model("resunet", 1, 3, registry=REG, channels=[16, 32, 64, 128], num_res_units=1).eval()
    with torch.no_grad():
        assert (norm_model(x)[..., :8, :] - norm_model(y)[..., :8, :]).abs().max() > 1e-3  # the test can tell
