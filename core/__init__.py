"""segsuite.core: the domain-free machinery shared by every plugin.

Names are resolved lazily so that ``import segsuite.core`` (done by every plugin at
start-up) does not import torch; ``from segsuite.core import build_model`` imports what
it needs on first use.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

from .hookspecs import hookimpl, hookspec

try:
    __version__ = metadata.version("segsuite")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY: dict[str, str] = {
    "ClassMap": "classmap",
    "SpatialRef": "spatial",
    "Item": "spatial",
    "Domain": "domain",
    "ModelSpec": "domain",
    "SegsuiteError": "errors",
    "load_plugins": "plugins",
    "get_registry": "plugins",
    "PluginRegistry": "plugins",
    # models and checkpoints
    "build_model": "models.registry",
    "list_models": "models.registry",
    "SegmentationModel": "models.base",
    "load_pretrained": "models.pretrained",
    "ModelCard": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    # training, inference, metrics, losses
    "TrainConfig": "trainer",
    "Trainer": "trainer",
    "Predictor": "infer",
    "SlidingWindow": "infer",
    "ConfusionMatrix": "metrics",
    "SegmentationMetrics": "metrics",
    "build_loss": "losses",
    "CrossEntropyLoss": "losses",
    "DiceLoss": "losses",
    "DiceCELoss": "losses",
    "FocalLoss": "losses",
    "TverskyLoss": "losses",
    # data workflow
    "SegmentationDataset": "data.datasets",
    "scan_pairs": "data.datasets",
    "write_manifest": "data.datasets",
    "split_pairs": "data.split",
    "kfold_pairs": "data.split",
    "count_classes": "data.stats",
    "Augment": "data.transforms",
    # domains, pipelines and the job executor
    "Pipeline": "pipeline",
    "BasePipeline": "pipeline",
    "RunOption": "pipeline",
    "RunContext": "pipeline",
    "Evaluates": "pipeline",
    "Explains": "pipeline",
    "Summarizes": "pipeline",
    "DatasetFormat": "domain",
    "Sample": "domain",
    "Job": "jobs",
    "run_job": "jobs",
    "expand_inputs": "jobs",
    "ImagePipeline": "image_pipeline",
    # the CLI's steps, same names
    "train": "tasks",
    "evaluate": "tasks",
    "predict_images": "tasks",
}

__all__ = ["__version__", "hookimpl", "hookspec", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segsuite.core' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
