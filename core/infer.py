"""Inference: whole-image or sliding-window, 2D or 3D, batched and blended on the device.

The sliding window places patches ``step = int(patch * (1 - overlap))`` apart and shifts
the last one back to end at the border (the same positions as MONAI's
``sliding_window_inference``, so results agree with it). Each window's logits are
weighted by an importance map — a separable Gaussian with ``sigma = 0.125 * patch`` that
trusts window centres more than edges, which is what removes seams — accumulated into one
output buffer and divided by the summed weights. Windows go through the network in
batches, are written into the buffer with slicing (no per-window concatenation), and
the Gaussian is cached per patch size and device.

Inputs smaller than the network can take (:func:`minimum_input_size`: a U-Net with stride 8
has a 1x1 bottleneck at 8x8 px, and instance normalisation needs more than one pixel) are
padded at the far end by replicating their border and the outputs cropped back, so a 1x1
image gets an answer instead of a shape error. Non-finite inputs and outputs (NaN, infinity)
are refused: no label or probability is ever computed from them.

On a CPU the windows go through the network in two *streams*: two threads, each running
its own batches with one intra-op thread (the thread budget is split between them), the
``batch_size`` windows in flight split between them too, and the results added to the buffer
in order in the calling thread. For the small convolutional networks of this suite that is
about 1.4x faster than one batch at a time on two intra-op threads (whose threads wait for
each other at the end of every layer). With the batches queued behind the running ones, up to
about twice ``batch_size`` windows' outputs exist at once; see :meth:`Predictor.map_batches`.
``SEGSUITE_CPU_STREAMS=1`` (or ``Predictor(streams=1)``) turns it off. On a CPU the network
also runs in the channels-last memory layout, where oneDNN's convolutions are faster (1.5-2.3x
for ``bnunet``, 1.15-1.33x for the smp and torchvision models; logits equal to float rounding),
unless it declares otherwise (``SegmentationModel.channels_last``: MONAI's U-Nets and DDRNet
do); a network that refuses the layout on its first call is put back in the plain one.

The buffer may live on another device than the network (``accumulate_on="cpu"`` for a
volume that does not fit on the GPU); on a CUDA out-of-memory error the predictor moves
accumulation to the CPU and retries once. For rasters larger than memory the building
blocks are public: :meth:`SlidingWindow.positions`, :func:`importance_map` and
:meth:`Predictor.window_logits` let a caller stream windows in and blended results out.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import SegsuiteError
from .uncertainty import DEFAULT_SAMPLES, check_method, entropy, mc_dropout_spread, seeded, tta_spread


@lru_cache(maxsize=16)
def _importance_cached(patch: tuple[int, ...], mode: str, sigma_scale: float, device: str) -> torch.Tensor:
    if mode == "constant":
        return torch.ones(patch, device=device)
    w: torch.Tensor | None = None
    for i, p in enumerate(patch):
        x = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2.0
        g = torch.exp(-(x**2) / (2 * (sigma_scale * p) ** 2))
        w = g if w is None else w.unsqueeze(-1) * g.view(*([1] * i), p)
    assert w is not None
    # never let a weight reach zero: border pixels covered by one window still need a value
    return w.clamp(min=max(float(w.min()), 1e-3))


def importance_map(patch: Sequence[int], mode: Literal["gaussian", "constant"] = "gaussian",
                   sigma_scale: float = 0.125, device: torch.device | str = "cpu") -> torch.Tensor:
    return _importance_cached(tuple(int(p) for p in patch), mode, float(sigma_scale), str(torch.device(device)))


@dataclass(frozen=True)
class SlidingWindow:
    patch_size: tuple[int, ...]
    overlap: float = 0.5
    blend: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: float = 0.125
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise SegsuiteError(f"overlap must be in [0, 1), got {self.overlap}")
        if any(int(p) < 1 for p in self.patch_size):
            raise SegsuiteError(f"patch size {self.patch_size} must be positive")
        if self.blend not in ("gaussian", "constant"):
            raise SegsuiteError(f"blend must be gaussian or constant, got {self.blend!r}")

    def starts(self, size: int, patch: int) -> list[int]:
        if size <= patch:
            return [0]
        step = max(1, int(patch * (1 - self.overlap)))
        out = []
        s = 0
        while True:
            out.append(min(s, size - patch))
            if s + patch >= size:
                break
            s += step
        return out

    def positions(self, shape: Sequence[int]) -> list[tuple[int, ...]]:
        """Start corner of every window over a spatial ``shape`` (inputs at least patch-sized)."""
        per_axis = [self.starts(int(s), int(p)) for s, p in zip(shape, self.patch_size)]
        return list(itertools.product(*per_axis))


_WEIGHT_SUMS: dict[tuple[Any, ...], torch.Tensor] = {}


def _window_weight_sum(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float, blend: str,
                       sigma_scale: float, device: str) -> torch.Tensor:
    """The summed importance weights of every window over an image of ``shape``, ``(1, *shape)``:
    what the blended logits are divided by. The same for every image of a shape, so the last two
    are kept (a whole-image-sized tensor each, so not more)."""
    key = (shape, patch, overlap, blend, sigma_scale, device)
    norm = _WEIGHT_SUMS.get(key)
    if norm is None:
        win = SlidingWindow(patch, overlap, blend, sigma_scale)  # type: ignore[arg-type]
        weight = importance_map(patch, blend, sigma_scale, device)  # type: ignore[arg-type]
        norm = torch.zeros((1, *shape), device=device)
        for start in win.positions(shape):
            norm[(slice(None), *(slice(s, s + p) for s, p in zip(start, patch)))] += weight
        while len(_WEIGHT_SUMS) >= 2:
            _WEIGHT_SUMS.pop(next(iter(_WEIGHT_SUMS)))
        _WEIGHT_SUMS[key] = norm
    return norm


def minimum_input_size(model: nn.Module) -> tuple[int, ...]:
    """The smallest spatial size ``model`` takes per axis.

    Instance normalisation needs more than one pixel per channel, so a network that has it
    needs two of its strides (its coarsest feature map then has 2 px per axis); so does a
    network that cannot be inspected (an ONNX export). Other networks take any size (their
    forward pads to the stride). 1 per axis when the network declares no ``stride``.
    """
    stride = int(getattr(model, "stride", 0) or 0)
    dims = int(getattr(model, "spatial_dims", 2))
    if stride <= 1:
        return (1,) * dims
    opaque = not any(True for _ in model.parameters())
    if opaque or any(isinstance(m, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)) for m in model.modules()):
        return (2 * stride,) * dims
    return (1,) * dims


def pad_to_minimum(x: torch.Tensor, minimum: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...] | None]:
    """``x`` ``(N, C, *S)`` padded at the far end of each spatial axis (border replicated) to at
    least ``minimum``, and the slices that crop a result back (``None`` when nothing was padded)."""
    size = tuple(int(s) for s in x.shape[2:])
    if all(s >= m for s, m in zip(size, minimum)):
        return x, None
    pads: list[int] = []
    for s, m in zip(reversed(size), reversed(tuple(minimum))):
        pads += [0, max(0, int(m) - s)]
    # replicate needs float input; it also copes with a 1-pixel axis, which reflect cannot
    return F.pad(x.float(), pads, mode="replicate"), tuple(slice(0, s) for s in size)


def non_finite_count(x: torch.Tensor) -> int:
    """How many values of ``x`` are NaN or infinite (0 for integer tensors)."""
    if not torch.is_floating_point(x):
        return 0
    # A sum is one read pass without a mask the size of x, and any NaN or infinity makes it
    # non-finite; only then (or when a huge but finite sum overflowed) are they counted.
    if x.numel() and bool(torch.isfinite(x.sum())):
        return 0
    return int((~torch.isfinite(x)).sum())


STREAMS_ENV = "SEGSUITE_CPU_STREAMS"


def channels_last_format(model: nn.Module, device: torch.device) -> torch.memory_format | None:
    """The channels-last layout for ``model`` on a CPU, unless it says no (``model.channels_last``
    is False: see :class:`~segsuite.core.models.base.SegmentationModel`) or has no convolution
    weights; else ``None``."""
    if device.type != "cpu" or getattr(model, "channels_last", None) is False:
        return None
    dims = int(getattr(model, "spatial_dims", 2))
    if not any(p.ndim == dims + 2 for p in model.parameters()):
        return None
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def default_streams() -> int:
    """How many CPU streams windows use: ``SEGSUITE_CPU_STREAMS`` when set, else 2 (one per
    core on the 2-core machines this was measured on; each stream gets half the threads)."""
    raw = os.environ.get(STREAMS_ENV, "").strip()
    if not raw:
        return 2
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SegsuiteError(f"{STREAMS_ENV}={raw!r}: must be a whole number of streams, 1 or more")
    return value


_STREAMS_LOCK = threading.Lock()
_STREAMS_OPEN: list[int] = []  # the thread count before the first pool opened, while any is open


@contextlib.contextmanager
def cpu_streams(streams: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``streams`` threads for model calls, with torch's intra-op threads split between
    them for as long as it is open.

    ``torch.set_num_threads`` sets the calling thread's count and the default that threads take
    when they first run torch (so the pool's new threads get the split). Pools opened at the
    same time (two predictors in two threads) all restore, in their own thread and as that
    default, the count from before the first of them opened."""
    with _STREAMS_LOCK:
        _STREAMS_OPEN.append(_STREAMS_OPEN[0] if _STREAMS_OPEN else torch.get_num_threads())
        threads = _STREAMS_OPEN[0]
        torch.set_num_threads(max(1, threads // streams))
    pool = ThreadPoolExecutor(streams, thread_name_prefix="segsuite-stream")
    try:
        yield pool
    finally:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        finally:  # also when that wait is interrupted (a second Ctrl-C)
            with _STREAMS_LOCK:
                _STREAMS_OPEN.pop()
                torch.set_num_threads(threads)


class Predictor:
    """Runs a segmentation model on raw images or volumes.

    ``image``: array or tensor ``(C, *S)`` or ``(N, C, *S)`` of raw values; the
    normalisation recorded in the model card is applied here.
    """

    def __init__(self, model: nn.Module, *, normalization: dict[str, Any] | None = None, device: str = "auto",
                 amp: Literal["auto", "bf16", "fp16", "off"] = "auto", window: SlidingWindow | None = None,
                 tta: bool = False, accumulate_on: str | None = None, class_map: Any = None,
                 streams: int | None = None) -> None:
        from .trainer import amp_dtype, resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.normalization = normalization or {}
        self.amp = amp_dtype(amp, self.device)
        self.window = window
        self.tta = tta
        self.accumulate_on = torch.device(accumulate_on) if accumulate_on else self.device
        self.class_map = class_map
        self.spatial_dims = int(getattr(model, "spatial_dims", 2))
        if streams is not None and streams < 1:
            raise SegsuiteError(f"streams must be 1 or more, got {streams}")
        self.streams = streams
        # the layout is applied on the first call (see run_network): until then the network is as given
        self.memory_format = channels_last_format(self.model, self.device)
        self._layout_checked = self.memory_format is None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", registry: Any = None, **kwargs: Any) -> "Predictor":
        if str(path).lower().endswith(".onnx"):  # exported by `segsuite export`: run with ONNX Runtime
            from .export import OnnxSegmentationModel

            model = OnnxSegmentationModel(path)  # its card was checked when it was read
            card = model.card
            device = "cpu"
        else:
            from .checkpoint import load_checkpoint

            ckpt = load_checkpoint(path)
            model = ckpt.build_model(registry=registry)
            card = ckpt.card
        predictor = cls(model, normalization=card.normalization, device=device, class_map=card.classes, **kwargs)
        predictor.card = card
        return predictor

    # -- input ----------------------------------------------------------------------
    def prepare(self, image: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
        if x.ndim == self.spatial_dims + 1:
            x = x[None]
        if x.ndim != self.spatial_dims + 2:
            raise SegsuiteError(f"expected a {self.spatial_dims}D image with channels, got shape {tuple(x.shape)}")
        x = x.float()
        bad = non_finite_count(x)
        if bad:
            raise SegsuiteError(f"the input has {bad} non-finite value(s) (NaN or infinity) of {x.numel()}; "
                                "replace them (e.g. with a valid value or the data's nodata) and run again")
        if self.normalization.get("kind") == "zscore":
            shape = (1, -1) + (1,) * self.spatial_dims
            mean = torch.as_tensor(self.normalization["mean"], dtype=torch.float32).view(shape)
            std = torch.as_tensor(self.normalization["std"], dtype=torch.float32).view(shape)
            if mean.numel() != x.shape[1]:
                raise SegsuiteError(f"the model was trained on {mean.numel()} channel(s); this input has {x.shape[1]}")
            x = (x - mean) / std
        return x

    # -- forward --------------------------------------------------------------------
    def _flips(self) -> list[tuple[int, ...]]:
        axes = list(range(2, 2 + self.spatial_dims))
        if not self.tta:
            return [()]
        return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]

    @torch.no_grad()
    def window_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of windows (already normalised), averaged over flips when TTA is on."""
        batch, crop = pad_to_minimum(batch.to(self.device, non_blocking=True), self.minimum_size)
        flips = self._flips()
        out = None
        for axes in flips:
            x = batch.flip(axes) if axes else batch
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                y = self.run_network(x)
            y = y.float()
            y = y.flip(axes) if axes else y
            out = y if out is None else out + y
        assert out is not None
        out = out / len(flips) if len(flips) > 1 else out
        out = out[(slice(None), slice(None), *crop)] if crop is not None else out
        # blending reads windows region by region: the plain layout (a copy in the stream's thread)
        return out.contiguous() if self.memory_format is not None else out

    @property
    def minimum_size(self) -> tuple[int, ...]:
        """The smallest spatial input the network takes per axis (smaller ones are padded)."""
        if getattr(self, "_minimum_size", None) is None:
            self._minimum_size = minimum_input_size(self.model)
        return self._minimum_size

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network on ``x`` in :attr:`memory_format`. The first call puts the network in that
        layout; for a network that did not declare it, that call is also the check: when it
        raises (a ``.view()`` that needs the plain strides, an op without channels-last
        support), the network goes back to the plain layout for good and the call is repeated,
        so an error that is not the layout's comes back as it is."""
        if self.memory_format is None:
            return self.model(x)
        x = x.contiguous(memory_format=self.memory_format)
        if self._layout_checked:
            return self.model(x)
        self.model.to(memory_format=self.memory_format)
        if getattr(self.model, "channels_last", None) is True:
            y = self.model(x)
        else:
            try:
                y = self.model(x)
            except RuntimeError:
                self.model.to(memory_format=torch.contiguous_format)
                self.memory_format = None
                self._layout_checked = True
                return self.model(x.contiguous())
        self._layout_checked = True
        return y

    # -- streams --------------------------------------------------------------------
    def stream_count(self) -> int:
        """How many batches run at once: 1 on a GPU, for a network without torch parameters
        (ONNX Runtime keeps its own threads) or with a single intra-op thread; else the
        ``streams`` given, or :func:`default_streams`, at most one per thread."""
        if self.device.type != "cpu" or not any(True for _ in self.model.parameters()):
            return 1
        return max(1, min(self.streams or default_streams(), torch.get_num_threads()))

    def stream_batch(self, batch_size: int) -> int:
        """Windows per network call when ``batch_size`` windows are in flight across the streams."""
        return max(1, math.ceil(batch_size / self.stream_count()))

    def map_batches(self, items: Iterable[tuple[Any, Any]], per_window: Callable[[torch.Tensor], Any] | None = None, *,
                    parallel: bool = True) -> Iterator[tuple[Any, Any]]:
        """``(tag, per_window(batch))`` for each ``(tag, batch)`` of ``items``, in the order given.

        ``per_window`` defaults to :meth:`window_logits`. An item whose batch is ``None`` is a
        marker: it comes back with ``None`` in its place, after every batch before it. With
        ``parallel`` and more than one :meth:`stream_count`, batches run in that many threads
        while the caller works on earlier results (one more than the streams is queued, so
        ``items`` is read only a little ahead); otherwise one after the other. ``per_window``
        must then be safe to call from two threads at once (a network in eval mode is); MC
        dropout, which draws from the global random generator, is not.
        """
        fn = per_window or self.window_logits
        streams = self.stream_count() if parallel else 1
        if streams == 1:
            for tag, batch in items:
                yield tag, (None if batch is None else fn(batch))
            return
        items = iter(items)
        if self.memory_format is not None and not self._layout_checked:
            # the layout's first-call check (see run_network) must not run in two threads at once
            for tag, batch in items:
                yield tag, (None if batch is None else fn(batch))
                if batch is not None:
                    break
        with cpu_streams(streams) as pool:
            queue: deque[tuple[Any, Future[Any] | None]] = deque()
            running = 0

            def ready() -> bool:
                head = queue[0][1]
                # markers count towards the bound too: a long run of them behind a batch still
                # running (rows without windows) would otherwise be read without limit
                return head is None or head.done() or running > streams + 1 or len(queue) > 2 * (streams + 2)

            for tag, batch in items:
                queue.append((tag, None if batch is None else pool.submit(fn, batch)))
                running += batch is not None
                while queue and ready():
                    tag0, future = queue.popleft()
                    running -= future is not None
                    yield tag0, (None if future is None else future.result())
            while queue:
                tag0, future = queue.popleft()
                yield tag0, (None if future is None else future.result())

    def check_output(self, out: torch.Tensor) -> torch.Tensor:
        bad = non_finite_count(out)
        if bad:
            raise SegsuiteError(f"the model produced {bad} non-finite value(s) (NaN or infinity) for this input; "
                                "its weights may be damaged, or reduced precision overflowed (try --device cpu)")
        return out

    @torch.no_grad()
    def logits(self, image: Any, *, normalized: bool = False) -> torch.Tensor:
        x = image if normalized else self.prepare(image)
        if self.window is None:
            return self.check_output(self.window_logits(x).to(self.accumulate_on))
        try:
            return self.check_output(self._sliding(x, self.accumulate_on))
        except torch.cuda.OutOfMemoryError:
            if self.accumulate_on.type != "cuda":
                raise
            torch.cuda.empty_cache()
            return self.check_output(self._sliding(x, torch.device("cpu")))

    def _sliding(self, x: torch.Tensor, acc: torch.device, per_window: Any = None) -> torch.Tensor:
        """Blend ``per_window(batch) -> (B, K, *patch)`` (default: :meth:`window_logits`, the only
        one run in streams) over the image."""
        parallel = per_window is None
        win = self.window
        assert win is not None
        if len(win.patch_size) != self.spatial_dims:
            raise SegsuiteError(f"patch size {win.patch_size} is not {self.spatial_dims}D")
        size = x.shape[2:]
        patch = tuple(int(p) for p in win.patch_size)
        pads: list[int] = []
        for s, p in zip(reversed(size), reversed(patch)):
            pads += [0, max(0, p - s)]
        if any(pads):  # smaller than one patch: pad at the far end, crop back at the end
            x = F.pad(x, pads, mode="replicate")
        full = tuple(int(v) for v in x.shape[2:])
        positions = win.positions(full)
        weight_map = importance_map(patch, win.blend, win.sigma_scale, self.device)
        regions = [tuple(slice(s, s + p) for s, p in zip(st, patch)) for st in positions]
        w_acc = weight_map.to(acc)
        norm = _window_weight_sum(full, patch, win.overlap, win.blend, win.sigma_scale, str(acc))
        per_call = self.stream_batch(win.batch_size) if parallel else win.batch_size

        def batches() -> Iterator[tuple[tuple[int, list[tuple[slice, ...]]], torch.Tensor]]:
            for n in range(x.shape[0]):
                for i in range(0, len(regions), per_call):
                    chunk = regions[i : i + per_call]
                    yield (n, chunk), torch.stack([x[n][(slice(None), *region)] for region in chunk])

        outs: list[torch.Tensor | None] = [None] * x.shape[0]
        with contextlib.closing(self.map_batches(batches(), per_window, parallel=parallel)) as results:
            for (n, chunk), y in results:
                # a blocking copy: from a GPU to the CPU, a non-blocking one goes to pinned memory
                # and may not have landed yet when it is added to the buffer
                y = y.to(acc)
                out = outs[n]
                if out is None:
                    out = outs[n] = torch.zeros((y.shape[1], *full), device=acc)
                for j, region in enumerate(chunk):
                    # weight and accumulate in one pass (no weighted copy of the batch)
                    out[(slice(None), *region)].addcmul_(y[j], w_acc)
        crop = (slice(None), *[slice(0, s) for s in size])
        blended = []
        for out in outs:
            assert out is not None
            out /= norm
            blended.append(out[crop])
        return blended[0][None] if len(blended) == 1 else torch.stack(blended)

    def probabilities(self, image: Any, **kw: Any) -> torch.Tensor:
        return self.logits(image, **kw).softmax(1)

    def predict(self, image: Any, **kw: Any) -> torch.Tensor:
        """Labels ``(N, *S)`` (int64) on the accumulation device."""
        return self.logits(image, **kw).argmax(1)

    # -- uncertainty ----------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            return self.run_network(x).float()

    @torch.no_grad()
    def window_uncertainty(self, batch: torch.Tensor, method: str, *, samples: int = DEFAULT_SAMPLES,
                           flip_axes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean logits ``(B, C, *patch)`` and sample spread ``(B, *patch)`` in [0, 1] of a batch of
        normalised windows, for ``method`` ``"tta"`` (all flips) or ``"mcdropout"`` (``samples`` passes
        with dropout on). ``flip_axes``: the spatial axes TTA flips (0-based; default all). Streaming
        callers blend both with the importance map, like logits."""
        batch, crop = pad_to_minimum(batch.to(self.device, non_blocking=True), self.minimum_size)
        if method == "tta":
            spread = tta_spread(self._forward, batch, self.spatial_dims, flip_axes)
        elif method == "mcdropout":
            spread = mc_dropout_spread(self._forward, self.model, batch, samples)
        else:
            raise SegsuiteError(f"window uncertainty is tta or mcdropout, not {method!r} (entropy comes from the logits)")
        logits, variance = spread.mean_logits(), spread.variance()
        if crop is not None:
            logits, variance = logits[(slice(None), slice(None), *crop)], variance[(slice(None), *crop)]
        return logits, variance

    @torch.no_grad()
    def probabilities_and_uncertainty(self, image: Any, method: str = "entropy", *, normalized: bool = False,
                                      samples: int = DEFAULT_SAMPLES, seed: int = 0,
                                      flip_axes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities ``(N, C, *S)`` and an uncertainty map ``(N, *S)`` in [0, 1], through the same
        whole-image or sliding-window path as :meth:`probabilities` (see :mod:`segsuite.core.uncertainty`).

        ``entropy`` is the normalised entropy of :meth:`probabilities`. ``tta`` and ``mcdropout`` blend
        the per-window mean logits and sample spread with the window weights; their probabilities are
        those of the mean logits. MC dropout is seeded with ``seed`` so that a rerun gives the same map.
        """
        if check_method(method) is None:
            raise SegsuiteError("no uncertainty method given; choose one of entropy, tta, mcdropout")
        if method == "entropy":
            probs = self.probabilities(image, normalized=normalized)
            return probs, entropy(probs)
        x = image if normalized else self.prepare(image)

        def per_window(batch: torch.Tensor) -> torch.Tensor:
            logits, spread = self.window_uncertainty(batch, method, samples=samples, flip_axes=flip_axes)
            return torch.cat([logits, spread[:, None]], 1)

        with seeded(seed, self.device):
            if self.window is None:
                out = per_window(x).to(self.accumulate_on)
            else:
                try:
                    out = self._sliding(x, self.accumulate_on, per_window)
                except torch.cuda.OutOfMemoryError:
                    if self.accumulate_on.type != "cuda":
                        raise
                    torch.cuda.empty_cache()
                    out = self._sliding(x, torch.device("cpu"), per_window)
        self.check_output(out)
        return out[:, :-1].softmax(1), out[:, -1]
