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
    format_version: int = FORMAT_VERSION

    @property
    def classes(self) -> ClassMap:
        return ClassMap.from_dict(self.class_map, source="model card")

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{source}: model card is not valid JSON ({exc})") from None
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise InputFileError(
                f"{source}: checkpoint format {version} was written by a newer segsuite; "
                f"this version reads format {FORMAT_VERSION} or older; upgrade segsuite"
            )
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise InputFileError(f"{source}: incomplete model card ({exc})") from None


@dataclass
class Checkpoint:
    card: ModelCard
    state_dict: dict[str, torch.Tensor]
    path: Path | None = None

    def build_model(self, registry: Any = None) -> torch.nn.Module:
        from .models.registry import model_from_card

        model = model_from_card(self.card.model, registry=registry)
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
    # safetensors refuses shared storage and non-contiguous tensors; clone to be safe
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: training state not found (resume needs the run's last.state.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(f"{path}: refused to load training state ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
