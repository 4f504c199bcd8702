"""``segsuite train``: train a model on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import domain, require_path


def train(
    domain_name: Annotated[Optional[str], typer.Argument(metavar="[DOMAIN]", help="Domain whose formats and defaults to use")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Training data: paired folders (images/, masks/) or a manifest CSV/JSON")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Validation data in the same form")] = None,
    model: Annotated[Optional[str], typer.Option(help="Architecture (see `segsuite models`); default: the domain's, else unet")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", "-O", help="Architecture option key=value, repeatable (encoder=resnet50)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names, a class-map JSON file, or a domain class map")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs [20]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Global batch size [8]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate [1e-3]")] = None,
    loss: Annotated[Optional[str], typer.Option(help="ce, dice, dicece, focal or tversky [dicece]")] = None,
    patch_size: Annotated[Optional[str], typer.Option(help="Random-crop training samples to H,W")] = None,
    class_weights: Annotated[Optional[str], typer.Option(help="none, inverse or median (frequency balancing)")] = None,
    foreground_crop: Annotated[Optional[float], typer.Option(help="Share of training crops centred on labelled foreground (rare defects)")] = None,
    pretrained: Annotated[Optional[Path], typer.Option(help="Local weights to start from (torchvision/timm/smp state dict or checkpoint)")] = None,
    freeze_encoder_epochs: Annotated[Optional[int], typer.Option(help="Keep the encoder frozen for this many epochs")] = None,
    monitor: Annotated[Optional[str], typer.Option(help="Metric choosing the best checkpoint: mean_iou, val_loss, iou/<class>...")] = None,
    early_stopping: Annotated[Optional[int], typer.Option(help="Stop after N validations without improvement")] = None,
    amp: Annotated[Optional[str], typer.Option(help="Mixed precision on GPU: auto, bf16, fp16 or off")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed [0]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes [0]")] = None,
    augment: Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Random flips, zoom and intensity changes [on]")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="Domain dataset format (default: detected, else paired image folders)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings (flags override it)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue an interrupted run from its folder")] = None,
    save_every: Annotated[Optional[float], typer.Option(help="Seconds of training between resume points (last checkpoint + optimiser state; 0: every epoch) [60]")] = None,
    output: Annotated[Path, typer.Option(help="Run folder for checkpoints and logs")] = Path("runs/train"),
) -> None:
    """Train a segmentation model; writes best/last checkpoints, log.csv, TensorBoard logs and metrics.json to --output.

    Without a domain, --data is a folder with images/ and masks/ (same file stems, index masks)
    or a manifest written by `segsuite split`.
    """
    from segsuite.core import tasks
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.models import parse_options
    from segsuite.core.models.registry import model_entry
    from segsuite.core.trainer import TrainConfig, check_config, with_overrides

    dom = domain(domain_name)
    base = TrainConfig.from_yaml(config) if config is not None else TrainConfig()
    if dom is not None:
        base = with_overrides(base, domain=dom.name)
        if model is None and config is None:
            base = with_overrides(base, model=dom.default_model.name, model_options=dict(dom.default_model.options))
    opts = parse_options(model_option)
    cfg = with_overrides(
        base, model=model, epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, class_weights=class_weights,
        pretrained=str(pretrained) if pretrained else None, foreground_crop=foreground_crop, freeze_encoder_epochs=freeze_encoder_epochs,
        monitor=monitor, early_stopping=early_stopping, amp=amp, device=device, seed=seed, workers=workers, augment=augment,
        save_every=save_every,
        model_options={**base.model_options, **opts} if opts else None,
    )
    cfg = check_config(tasks.with_patch(cfg, patch_size))  # every number checked before any data is read
    if cfg.patch_size is not None and len(cfg.patch_size) == 3 and (dom is None or dom.spatial_dims == 2):
        # (a volume domain takes 2 sides too: a 2D network trained on slices)
        raise SegsuiteError(f"--patch-size {','.join(map(str, cfg.patch_size))}: 2D images need 2 sides (H,W), e.g. 256,256")
    require_path(data, "training data (--data)")
    if val is not None:
        require_path(val, "validation data (--val)")
    model_entry(cfg.model)
    class_map = tasks.resolve_classes(classes, dom)
    fmt = tasks.pick_format(dom, data, format)
    if dom is not None and dom.spatial_dims != 2 and fmt is None:
        raise SegsuiteError(f"{data}: not a {dom.name} dataset this domain can read "
                            f"(formats: {', '.join(dom.dataset_formats) or 'none'}); see `segsuite sample {dom.name}`")
    if dom is not None and cfg.patch_size is None:
        cfg = with_overrides(cfg, patch_size=tuple(dom.patch_size))
    result = tasks.train(data, class_map, output, cfg, val=val, resume=resume, dataset_format=fmt)
    if val is not None:
        typer.echo(f"best checkpoint: {result.best_checkpoint}  ({result.monitor} = {result.best_value:.4f})")
    else:
        typer.echo("no validation data (--val): only the last checkpoint is kept")
    typer.echo(f"last checkpoint: {result.last_checkpoint}")
