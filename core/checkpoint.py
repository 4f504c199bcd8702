"""Checkpoints: weights plus a model card, loadable without executing pickled code.

A checkpoint is one ``.safetensors`` file. The tensors are the model's state dict; the
file's metadata holds the model card as JSON (architecture and options, class map,
input normalisation, patch size, domain, segsuite version, training config, validation
metrics, thresholds). safetensors stores raw tensor bytes only, so loading a checkpoint
can never run code. Optimiser/scheduler/RNG state for ``--resume`` goes to a side file
``<name>.state.pt`` read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .classmap import ClassMap
from .errors import InputFileError
from .io import atomic_path

FORMAT_VERSION = 1
CARD_KEY = "segsuite.card"
FORMAT_KEY = "segsuite.format"


@dataclass
class ModelCard:
    model: dict[str, Any]
    class_map: dict[str, Any]
    normalization: dict[str, Any] = field(default_factory=dict)
    patch_size: list[int] | None = None
    domain: str | None = None
    segsuite_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    input_stats: dict[str, Any] = field(default_factory=dict)
    """Per-channel percentiles of the raw training inputs (see :mod:`segsuite.core.drift`); empty in older cards."""
    format_version: int = FORMAT_VERSION

    @property
    def classes(self) -> ClassMap:
        return ClassMap.from_dict(self.class_map, source="model card")

    def to_json(self) -> str:
        """The card as strict JSON (non-finite metrics become ``null``; unknown types their ``str``)."""
        from .io import dumps

        return dumps(asdict(self), fallback=str)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelCard":
        """Parse and check a stored card; every problem is one :class:`InputFileError` naming ``source``."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InputFileError(f"{source}: model card is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputFileError(f"{source}: the model card is a JSON {_json_kind(data)}, not an object; "
                                 "the checkpoint is damaged or was not written by segsuite")
        try:
            version = int(data.get("format_version", 0))
        except (TypeError, ValueError):
            raise InputFileError(f"{source}: the model card's format_version {data.get('format_version')!r} "
                                 "is not a number") from None
        if version > FORMAT_VERSION:
            raise InputFileError(
                f"{source}: checkpoint format {version} was written by a newer segsuite; "
                f"this version reads format {FORMAT_VERSION} or older; upgrade segsuite"
            )
        known = set(cls.__dataclass_fields__)
        try:
            card = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise InputFileError(f"{source}: incomplete model card ({exc})") from None
        card.check(source)
        return card

    def check(self, source: str) -> None:
        """Refuse a card that no network could match: sections of the wrong type, or a class
        map with more or fewer names than the network has outputs."""
        for key, kind in (("model", dict), ("class_map", dict), ("normalization", dict), ("thresholds", dict)):
            if not isinstance(getattr(self, key), kind):
                raise InputFileError(f"{source}: the model card's {key!r} is a JSON "
                                     f"{_json_kind(getattr(self, key))}, not an object; the checkpoint is damaged")
        model = self.model
        for key in ("arch", "in_channels", "num_classes"):
            if key not in model:
                raise InputFileError(f"{source}: the model card does not name the network's {key}; "
                                     "the checkpoint is damaged")
        outputs = model["num_classes"]
        if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs < 1:
            raise InputFileError(f"{source}: the model card's num_classes {outputs!r} is not a positive whole number")
        names = self.class_map.get("names")
        if not isinstance(names, list):
            raise InputFileError(f"{source}: the model card's class map has no list of class names")
        if len(names) != outputs:
            raise InputFileError(f"{source}: the model card names {len(names)} class(es) but the network has {outputs} "
                                 "output channel(s); the card does not belong to these weights (fix its class map "
                                 "or retrain)")

    def check_domain(self, expected: str | None, source: str | Path, *, allow: bool = False) -> None:
        """Refuse a model trained for another domain than the command's (``allow`` overrides).

        A card that names no domain fits every domain; so does ``expected=None`` (no domain).
        """
        if allow or expected is None or not self.domain or self.domain == expected:
            return
        raise InputFileError(f"{source}: a model for the {self.domain} domain, but this command is for {expected} "
                             f"inputs; pass a model for {expected} with --model, or add --allow-domain-mismatch "
                             "to run it anyway")


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


@dataclass
class Checkpoint:
    card: ModelCard
    state_dict: dict[str, torch.Tensor]
    path: Path | None = None

    def build_model(self, registry: Any = None) -> torch.nn.Module:
        """The card's architecture with these weights; a one-line :class:`InputFileError` naming the
        checkpoint when the card cannot be built or a tensor is missing, extra or of another shape."""
        from .errors import SegsuiteError
        from .models.registry import model_from_card

        try:
            model = model_from_card(self.card.model, registry=registry)
        except SegsuiteError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"{self.path}: the model card's architecture cannot be built "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        expected = model.state_dict()
        for name, tensor in self.state_dict.items():
            want = expected.get(name)
            if want is not None and tuple(want.shape) != tuple(tensor.shape):
                raise InputFileError(
                    f"{self.path}: tensor {name} has shape {list(tensor.shape)}, but architecture "
                    f"{self.card.model.get('arch')!r} as the card describes it needs {list(want.shape)}; "
                    "the weights and the card do not belong together")
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise InputFileError(
                f"{self.path}: weights do not fit architecture {self.card.model.get('arch')!r} "
                f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[0]})"
            )
        return model


def save_checkpoint(path: str | Path, model: torch.nn.Module, card: ModelCard) -> Path:
    """Write weights + card atomically (temporary name, then rename)."""
    from safetensors.torch import save_file

    from . import __version__

    path = Path(path)
    card.segsuite_version = card.segsuite_version or __version__
    # safetensors refuses tensors that share storage (tied weights) and needs contiguous ones: copy
    # only those, not every tensor (a full copy was a third of the time of a save)
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        ptr = v.untyped_storage().data_ptr()
        state[k] = v.clone(memory_format=torch.contiguous_format) if ptr in seen else v.contiguous()
        seen.add(ptr)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={CARD_KEY: card.to_json(), FORMAT_KEY: str(FORMAT_VERSION)})
    return path


def rewrite_card(path: str | Path, card: ModelCard, output: str | Path | None = None) -> Path:
    """Write the same weights with an updated card (atomically; in place when ``output`` is None)."""
    from safetensors.torch import save_file

    ckpt = load_checkpoint(path)
    out = Path(output) if output is not None else Path(path)
    with atomic_path(out) as tmp:
        save_file(ckpt.state_dict, str(tmp), metadata={CARD_KEY: card.to_json(), FORMAT_KEY: str(FORMAT_VERSION)})
    return out


def card_of(path: str | Path) -> ModelCard:
    """The model card of a checkpoint or of a segsuite ONNX export (``.onnx``)."""
    if str(path).lower().endswith(".onnx"):
        from .export import OnnxSegmentationModel

        return OnnxSegmentationModel(path).card
    return read_card(path)


def read_card(path: str | Path) -> ModelCard:
    """Only the model card (no tensors read)."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise InputFileError(_not_safetensors(path, exc)) from None
    if CARD_KEY not in meta:
        raise InputFileError(
            f"{path}: a safetensors file without a segsuite model card; import plain weights with --pretrained instead"
        )
    return ModelCard.from_json(meta[CARD_KEY], str(path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise InputFileError(_not_safetensors(path, exc)) from None
    return Checkpoint(card=card, state_dict=state, path=path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise InputFileError(f"{path}: checkpoint must be a file")


def _not_safetensors(path: Path, exc: Exception) -> str:
    head = path.read_bytes()[:2] if path.stat().st_size >= 2 else b""
    if head in (b"PK", b"\x80\x02", b"\x80\x04", b"\x80\x05"):
        return (f"{path}: a pickled PyTorch file, not a segsuite checkpoint; pickles are never loaded as checkpoints "
                "(they can execute code); import its weights with --pretrained")
    return f"{path}: not a segsuite checkpoint (expected a .safetensors file with a model card: {str(exc)[:120]})"


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, _without_crc32():
        torch.save(state, tmp)
    return path


@contextmanager
def _without_crc32() -> Iterator[None]:
    """torch.save without the zip CRC-32 of every record, where this torch can (2.6+): the CRC was
    ~40 % of writing the training state, and the atomic rename already rules out torn files."""
    try:
        from torch.utils.serialization import config
    except ImportError:
        yield
        return
    with config.patch({"save.compute_crc32": False}):
        yield


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: training state not found (resume needs the run's last.state.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(f"{path}: refused to load training state ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
