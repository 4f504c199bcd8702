"""``segsuite explain``: Seg-Grad-CAM maps showing what a class's prediction rests on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from segsuite.core.engines import ENGINE_HELP

from .app import debug_enabled
from .common import domain, engine_settings, execute_job, not_implemented, require_path


def explain(
    ctx: typer.Context,
    domain_name: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain (its reader and shipped model are used)")],
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="File, folder or glob")] = None,
    class_name: Annotated[Optional[str], typer.Option("--class", help="Class to explain, by name (e.g. water, car)")] = None,
    model: Annotated[Optional[Path], typer.Option(help="segsuite checkpoint (default: the domain's shipped model)")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder [segsuite-explain]")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Feature layer by module name, e.g. net.model.1 (default: chosen automatically)")] = None,
    max_size: Annotated[int, typer.Option(help="Inputs larger than this on a side are explained on their centre crop")] = 1024,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs are all there already")] = False,
    allow_domain_mismatch: Annotated[bool, typer.Option("--allow-domain-mismatch", help="Explain with a model whose card names another domain (refused by default)")] = False,
    engine: Annotated[str, typer.Option(help=ENGINE_HELP["engine"])] = "local",
    address: Annotated[Optional[str], typer.Option(help=ENGINE_HELP["address"])] = None,
    workers: Annotated[Optional[int], typer.Option(help=ENGINE_HELP["workers"])] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help=ENGINE_HELP["gpus_per_worker"])] = None,
) -> None:
    """Explain one class's segmentation with Seg-Grad-CAM: a heatmap, an overlay and a JSON per input.

    The gradient of the class's logits, summed over the pixels predicted as that class (the whole
    image when it is predicted nowhere), weights a feature layer's channels; the weighted sum, cut
    at zero, upsampled and scaled to 0..1, shows which parts of the input drive the prediction.
    The JSON gives the layer and the share of the map inside the predicted region. Runs as a job:
    a failed input is listed in summary.json and the others go on (exit status 2).
    """
    from segsuite.core.engines import PipelineRecipe
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.jobs import Job
    from segsuite.core.pipeline import check_options

    settings = engine_settings(engine, address, workers, gpus_per_worker)
    dom = domain(domain_name)
    if input is None:
        raise typer.BadParameter("--input is required")
    if class_name is None:
        raise typer.BadParameter("--class is required (a class name of the model)")
    if model is None:
        from segsuite.core.sample_data import shipped_model

        model = shipped_model(dom)
    require_path(model, "checkpoint (--model)", kind="file")
    if str(model).lower().endswith(".onnx"):
        raise SegsuiteError(f"{model}: explanations need the model's gradients; pass the .safetensors checkpoint, "
                            "not an ONNX export")
    class_name = _model_class_name(model, class_name, dom.name, allow_domain_mismatch)
    pipeline = explain_pipeline(dom.name, class_name, layer)
    declared = {o.name for o in pipeline.options}
    given = {"max_size": max_size} if "max_size" in declared else {}
    if "max_size" not in declared and max_size != 1024:
        raise SegsuiteError(f"the {dom.name} domain's explanations do not take --max-size")
    options = check_options(pipeline.options, given)
    from segsuite.core.jobs import JobConsole
    from segsuite.core.planning import expand_for

    inputs = expand_for(pipeline, input, pipeline.suffixes or tuple(dom.readers), JobConsole().warning)
    job = Job(pipeline=pipeline, inputs=inputs, checkpoint=model, output=output, options=options, device=device,
              skip_existing=skip_existing, command=f"explain {dom.name}",
              recipe=PipelineRecipe("segsuite.cli.explain:explain_pipeline", (dom.name, class_name, layer)))
    execute_job(job, debug=debug_enabled(ctx), what="explaining", engine=settings)


def explain_pipeline(domain_name: str, class_name: str, layer: str | None) -> Any:
    """The pipeline ``segsuite explain DOMAIN --class NAME`` runs (the domain's own explainer, or
    the core's 2D one with the domain's readers); also how a Ray worker rebuilds it."""
    from segsuite.core.image_pipeline import ImageExplainPipeline
    from segsuite.core.pipeline import Explains

    dom = domain(domain_name)
    if isinstance(dom.pipeline, Explains):  # the domain explains its own inputs (e.g. volumes on their grid)
        return dom.pipeline.explainer(class_name, layer)
    if dom.spatial_dims == 2:
        return ImageExplainPipeline(class_name, layer, reader=lambda p: dom.reader_for(p)(p),
                                    suffixes=tuple(dom.readers), name=dom.name)
    raise not_implemented("explain", f"explaining {dom.name} ({dom.spatial_dims}D) inputs")


def _model_class_name(model: Path, name: str, domain_name: str, allow_mismatch: bool) -> str:
    """The model's own spelling of ``--class`` (matched case-insensitively), so output names follow the
    model's class map; an unknown class, or a model for another domain, is a one-line error before any
    input is read. A checkpoint whose card cannot be read is left to the pipeline's loader, which says
    what is wrong with it."""
    from segsuite.core.checkpoint import read_card
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.explain import class_index

    try:
        card = read_card(model)
    except SegsuiteError:  # not a readable checkpoint: the pipeline's load says what is wrong with it
        return name
    card.check_domain(domain_name, model, allow=allow_mismatch)
    return card.classes.names[class_index(card.classes, name)]
