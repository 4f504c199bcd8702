"""``segsuite explain``: Seg-Grad-CAM maps showing what a class's prediction rests on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import domain, expand_inputs, not_implemented, require_path


def explain(
    domain_name: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain (its reader and shipped model are used)")],
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="File, folder or glob")] = None,
    class_name: Annotated[Optional[str], typer.Option("--class", help="Class to explain, by name (e.g. water, car)")] = None,
    model: Annotated[Optional[Path], typer.Option(help="segsuite checkpoint (default: the domain's shipped model)")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder [segsuite-explain]")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Feature layer by module name, e.g. net.model.1 (default: chosen automatically)")] = None,
    max_size: Annotated[int, typer.Option(help="Inputs larger than this on a side are explained on their centre crop")] = 1024,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
) -> None:
    """Explain one class's segmentation with Seg-Grad-CAM: a heatmap, an overlay and a JSON per input.

    The gradient of the class's logits, summed over the pixels predicted as that class (the whole
    image when it is predicted nowhere), weights a feature layer's channels; the weighted sum, cut
    at zero, upsampled and scaled to 0..1, shows which parts of the input drive the prediction.
    The JSON gives the layer and the share of the map inside the predicted region.
    """
    import inspect

    from segsuite.core.errors import SegsuiteError

    dom = domain(domain_name)
    if input is None:
        raise typer.BadParameter("--input is required")
    if class_name is None:
        raise typer.BadParameter("--class is required (a class name of the model)")
    inputs = expand_inputs(input, tuple(dom.readers))
    if model is None:
        from segsuite.core.sample_data import default_checkpoint

        model = default_checkpoint(dom.name)
    require_path(model, "checkpoint (--model)", kind="file")
    if str(model).lower().endswith(".onnx"):
        raise SegsuiteError(f"{model}: explanations need the model's gradients; pass the .safetensors checkpoint, not an ONNX export")
    runner_params = inspect.signature(dom.runner).parameters if dom.runner is not None else {}
    if "explain" in runner_params:  # the domain explains its own inputs (e.g. volumes)
        extra = {}
        if layer is not None:
            if "layer" not in runner_params:
                raise SegsuiteError(f"the {dom.name} domain's explanations do not take --layer")
            extra["layer"] = layer
        results = dom.runner(inputs, model, output, device=device, explain=class_name, **extra)
        typer.echo(f"wrote {len(results)} explanation(s)")
        return
    if dom.spatial_dims != 2:
        raise not_implemented("explain", f"explaining {dom.name} ({dom.spatial_dims}D) inputs")
    from segsuite.core.explain import class_index, explain_images
    from segsuite.core.infer import Predictor

    predictor = Predictor.from_checkpoint(model, device=device)
    class_index(predictor.class_map, class_name)  # an unknown class fails before any input is read
    out = output or Path("segsuite-explain")
    records = explain_images(predictor, inputs, lambda p: dom.reader_for(p)(p), class_name, out, layer=layer,
                             max_size=max_size, log=lambda m: typer.echo(m))
    typer.echo(f"wrote {len(records)} explanation(s) to {out}")
