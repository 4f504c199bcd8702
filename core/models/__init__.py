"""The model zoo: one registry over smp, torchvision, MONAI and our own SegNet."""

from .base import SegmentationModel
from .registry import CORE_MODELS, ModelEntry, build_model, list_models, model_from_card, parse_options

__all__ = ["CORE_MODELS", "ModelEntry", "SegmentationModel", "build_model", "list_models", "model_from_card", "parse_options"]
