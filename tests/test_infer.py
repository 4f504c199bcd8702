import numpy as np
import pytest
import torch
from torch import nn

from segsuite.core.infer import Predictor, SlidingWindow, importance_map
from segsuite.core.models import build_model
from segsuite.core.plugins import load_plugins

REG = load_plugins(entry_points=False)


class PixelModel(nn.Module):
    """Output depends only on the pixel itself: any seam would be a blending bug."""

    spatial_dims = 2

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = dims
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(2, 3, 1)
        torch.manual_seed(1)
        nn.init.normal_(self.conv.weight)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("dims, size, patch", [(2, (70, 53), (32, 24)), (3, (20, 17, 23), (8, 8, 8)), (2, (10, 12), (16, 16))])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_no_seams_pixelwise_model_equals_whole_image(dims, size, patch, blend):
    model = PixelModel(dims)
    x = torch.randn(2, 2, *size)
    whole = Predictor(model, device="cpu").logits(x, normalized=True)
    tiled = Predictor(model, device="cpu", window=SlidingWindow(patch, overlap=0.25, blend=blend, batch_size=3)).logits(x, normalized=True)
    assert tiled.shape == whole.shape == (2, 3, *size)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_matches_monai_sliding_window_inference(dims):
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    model = build_model("unet3d", 1, 3, spatial_dims=dims, registry=REG, channels=[4, 8, 16]).eval()
    size = (61, 75) if dims == 2 else (30, 37, 26)
    patch = (32, 32) if dims == 2 else (16, 16, 16)
    x = torch.randn(1, 1, *size)
    ours = Predictor(model, device="cpu", window=SlidingWindow(patch, overlap=0.5, blend="gaussian", batch_size=4)).logits(x, normalized=True)
    with torch.no_grad():
        ref = sliding_window_inference(x, patch, 4, model, overlap=0.5, mode="gaussian")
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_importance_map_is_cached_and_peaks_in_the_centre():
    a = importance_map((16, 16))
    assert a is importance_map((16, 16))
    assert a[7, 7] == a.max() and a[0, 0] == a.min() and a.min() > 0


def test_flip_tta_is_exact_for_a_flip_equivariant_model():
    model = PixelModel(2)
    x = torch.randn(1, 2, 20, 20)
    plain = Predictor(model, device="cpu").logits(x, normalized=True)
    tta = Predictor(model, device="cpu", tta=True).logits(x, normalized=True)
    torch.testing.assert_close(plain, tta)


def test_normalization_from_the_card_is_applied():
    model = PixelModel(2)
    raw = np.full((2, 8, 8), 100.0, np.float32)
    pred = Predictor(model, device="cpu", normalization={"kind": "zscore", "mean": [100, 100], "std": [10, 10]})
    expected = Predictor(model, device="cpu").logits(torch.zeros(1, 2, 8, 8), normalized=True)
    torch.testing.assert_close(pred.logits(raw), expected)
    with pytest.raises(Exception, match="trained on 2 channel"):
        pred.logits(np.zeros((3, 8, 8), np.float32))


def test_cpu_accumulation_device_gives_the_same_result():
    model = PixelModel(2)
    x = torch.randn(1, 2, 40, 40)
    a = Predictor(model, device="cpu", window=SlidingWindow((16, 16))).logits(x, normalized=True)
    b = Predictor(model, device="cpu", window=SlidingWindow((16, 16)), accumulate_on="cpu").logits(x, normalized=True)
    torch.testing.assert_close(a, b)


def test_cached_window_weight_sums_follow_the_shape_and_overlap():
    """The summed window weights are cached per shape/patch/overlap: alternating shapes and
    overlaps must each still give MONAI's result (a stale cache entry would not)."""
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    model = build_model("unet3d", 1, 3, spatial_dims=2, registry=REG, channels=[4, 8, 16]).eval()
    for size, overlap in [((61, 75), 0.5), ((40, 90), 0.5), ((61, 75), 0.25), ((61, 75), 0.5), ((40, 90), 0.25)]:
        x = torch.randn(1, 1, *size)
        ours = Predictor(model, device="cpu", window=SlidingWindow((32, 32), overlap=overlap, batch_size=3)).logits(x, normalized=True)
        with torch.no_grad():
            ref = sliding_window_inference(x, (32, 32), 3, model, overlap=overlap, mode="gaussian")
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_non_finite_values_are_counted_exactly():
    from segsuite.core.infer import non_finite_count

    x = torch.zeros(100)
    assert non_finite_count(x) == 0
    x[3], x[50], x[70] = float("inf"), float("-inf"), float("nan")
    assert non_finite_count(x) == 3
    huge = torch.full((10,), 3e38)  # finite values whose sum overflows: not reported as bad
    assert non_finite_count(huge) == 0
    assert non_finite_count(torch.arange(5)) == 0


# -- CPU streams and the channels-last layout ------------------------------------------------


def _batches(n: int) -> list[tuple[tuple[str, int], torch.Tensor | None]]:
    """Batches of varied sizes with a marker before each."""
    g = torch.Generator().manual_seed(0)
    items: list[tuple[tuple[str, int], torch.Tensor | None]] = []
    for i in range(n):
        items.append((("marker", i), None))
        items.append((("batch", i), torch.randn(i % 3 + 1, 2, 12, 10, generator=g)))
    return items


def test_map_batches_keeps_order_and_markers_and_splits_the_threads():
    import threading

    pred = Predictor(PixelModel(2), device="cpu", streams=2)
    threads = torch.get_num_threads()
    callers: set[int] = set()
    inner: set[int] = set()

    def per_window(batch):
        callers.add(threading.get_ident())
        inner.add(torch.get_num_threads())
        return pred.window_logits(batch)

    items = _batches(9)
    pred.window_logits(items[1][1])  # the layout's first-call check runs in the calling thread
    out = list(pred.map_batches(iter(items), per_window))
    assert [tag for tag, _ in out] == [tag for tag, _ in items]
    for (_, batch), (_, result) in zip(items, out):
        if batch is None:
            assert result is None
        else:
            torch.testing.assert_close(result, pred.window_logits(batch), atol=1e-6, rtol=1e-6)
    assert torch.get_num_threads() == threads  # restored
    if threads >= 2:
        assert pred.stream_count() == 2
        assert threading.get_ident() not in callers  # the network ran in the streams' threads
        assert inner == {threads // 2}


def test_map_batches_error_stops_the_run_and_restores_the_threads():
    pred = Predictor(PixelModel(2), device="cpu", streams=2)
    threads = torch.get_num_threads()
    calls = []

    def per_window(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("window 3 is broken")
        return batch

    with pytest.raises(RuntimeError, match="window 3 is broken"):
        for _ in pred.map_batches(iter(_batches(40)), per_window):
            pass
    assert torch.get_num_threads() == threads
    assert len(calls) < 40  # the batches queued behind the failure were not all run


def test_streams_of_two_predictors_at_once_restore_the_thread_count():
    """Two jobs in two threads each open streams; whatever the order they close in, torch's
    thread count ends where it started, in both threads and for threads started later."""
    import threading

    from segsuite.core.infer import cpu_streams

    threads = torch.get_num_threads()
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def other() -> None:
        with cpu_streams(2):
            seen["other inside"] = torch.get_num_threads()
            inside.set()
            release.wait(10)
        seen["other after"] = torch.get_num_threads()

    t = threading.Thread(target=other)
    with cpu_streams(2):
        assert torch.get_num_threads() == max(1, threads // 2)
        t.start()
        inside.wait(10)
    assert torch.get_num_threads() == threads
    release.set()
    t.join(10)
    assert seen == {"other inside": max(1, threads // 2), "other after": threads}
    assert torch.get_num_threads() == threads
    later: list[int] = []
    threading.Thread(target=lambda: later.append(torch.get_num_threads())).start()
    for _ in range(100):
        if later:
            break
        threading.Event().wait(0.05)
    assert later == [threads]


def test_stream_count_rules(monkeypatch):
    from segsuite.core.errors import SegsuiteError

    model = PixelModel(2)
    assert Predictor(model, device="cpu", streams=1).stream_count() == 1
    monkeypatch.setenv("SEGSUITE_CPU_STREAMS", "1")
    assert Predictor(model, device="cpu").stream_count() == 1
    monkeypatch.setenv("SEGSUITE_CPU_STREAMS", "two")
    with pytest.raises(SegsuiteError, match="SEGSUITE_CPU_STREAMS='two'"):
        Predictor(model, device="cpu").stream_count()
    monkeypatch.delenv("SEGSUITE_CPU_STREAMS")
    with pytest.raises(SegsuiteError, match="streams must be 1 or more"):
        Predictor(model, device="cpu", streams=0)

    class NoParameters(nn.Module):  # as an ONNX Runtime session: keeps its own threads
        spatial_dims = 2

        def forward(self, x):
            return x

    assert Predictor(NoParameters(), device="cpu", streams=2).stream_count() == 1
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert Predictor(model, device="cpu", streams=2).stream_count() == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_in_streams_equals_one_stream(dims):
    torch.manual_seed(0)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    model = nn.Sequential(conv(2, 4, 3, padding=1), nn.ReLU(), conv(4, 3, 3, padding=1))
    model.spatial_dims = dims
    size, patch = ((67, 58), (24, 20)) if dims == 2 else ((21, 26, 19), (10, 12, 8))
    x = torch.randn(2, 2, *size)
    window = SlidingWindow(patch, overlap=0.5, batch_size=3)
    one = Predictor(model, device="cpu", window=window, streams=1).logits(x, normalized=True)
    two = Predictor(model, device="cpu", window=window, streams=2).logits(x, normalized=True)
    torch.testing.assert_close(two, one, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch, dims, options", [("bnunet", 2, {}), ("bnunet", 3, {"channels": [4, 8, 16]}),
                                                 ("pspnet", 2, {})])
def test_channels_last_on_cpu_gives_the_same_logits(arch, dims, options):
    torch.manual_seed(0)
    model = build_model(arch, 2, 3, spatial_dims=dims, registry=REG, **options).eval()
    plain = build_model(arch, 2, 3, spatial_dims=dims, registry=REG, **options).eval()
    plain.load_state_dict(model.state_dict())
    pred = Predictor(model, device="cpu")
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    assert pred.memory_format == layout
    x = torch.randn(2, 2, *((64, 48) if dims == 2 else (16, 24, 16)))
    with torch.no_grad():
        expected = plain(x)
    got = pred.logits(x, normalized=True)
    assert next(p for p in pred.model.parameters() if p.ndim == dims + 2).is_contiguous(memory_format=layout)
    assert got.is_contiguous()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


class RefusesChannelsLast(nn.Module):
    """Flattens with ``view``, which needs the plain strides."""

    spatial_dims = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y.view(y.shape[0], -1).view(y.shape)


@pytest.mark.parametrize("streams", [1, 2])
def test_a_network_that_refuses_channels_last_goes_back_to_the_plain_layout(streams):
    model = RefusesChannelsLast()
    x = torch.randn(1, 2, 40, 36)
    with torch.no_grad():
        expected = model(x)
    pred = Predictor(model, device="cpu", streams=streams, window=SlidingWindow((16, 16), overlap=0.25, batch_size=4))
    assert pred.memory_format == torch.channels_last  # undeclared: tried
    got = pred.logits(x, normalized=True)
    assert pred.memory_format is None and model.conv.weight.is_contiguous()
    torch.testing.assert_close(got, Predictor(RefusesChannelsLast(), device="cpu", streams=1,
                                              window=pred.window).logits(x, normalized=True))
    assert got.shape == expected.shape


def test_a_network_can_decline_channels_last():
    from segsuite.core.models.base import SegmentationModel

    conv = nn.Conv2d(2, 3, 1)
    declined = SegmentationModel(conv, arch="c", in_channels=2, num_classes=3, spatial_dims=2, stride=1,
                                 encoder_prefix=None, channels_last=False)
    assert Predictor(declined, device="cpu").memory_format is None
    assert build_model("unet3d", 1, 2, spatial_dims=3, registry=REG, channels=[4, 8]).channels_last is False
    assert build_model("ddrnet", 3, 4, registry=REG, planes=8).channels_last is False
    assert Predictor(PixelModel(2), device="cpu").memory_format == torch.channels_last  # undeclared: tried


def test_map_batches_reads_only_a_little_ahead_through_markers():
    """Markers (rows without windows) behind a batch that is still running must not be read
    without bound: each may hold data (a row's valid mask in the tiler)."""
    import time

    pred = Predictor(PixelModel(2), device="cpu", streams=2)
    pred.window_logits(torch.zeros(1, 2, 4, 4))  # the layout's first-call check, done here
    threads = torch.get_num_threads()
    pulled: list[int] = []

    def items():
        for i in range(500):
            pulled.append(i)
            yield i, (torch.zeros(1, 2, 4, 4) if i % 100 == 0 else None)

    def slow(batch):
        time.sleep(0.3)
        return batch

    try:
        torch.set_num_threads(2)
        assert pred.stream_count() == 2
        results = pred.map_batches(items(), slow)
        assert next(results)[0] == 0
        assert len(pulled) <= 20
        assert [tag for tag, _ in results] == list(range(1, 500))
    finally:
        torch.set_num_threads(threads)


def test_streams_restore_the_thread_count_when_closing_them_is_interrupted(monkeypatch):
    """A second Ctrl-C while the pool waits for its running batches must not leave the split
    thread count (and a stale entry that later pools restore to) behind."""
    from segsuite.core import infer

    class Interrupted(infer.ThreadPoolExecutor):
        def shutdown(self, *args, **kwargs):
            super().shutdown(*args, **kwargs)
            raise KeyboardInterrupt

    monkeypatch.setattr(infer, "ThreadPoolExecutor", Interrupted)
    threads = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt):
        with infer.cpu_streams(2):
            pass
    assert torch.get_num_threads() == threads and infer._STREAMS_OPEN == []
