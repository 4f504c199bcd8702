"""``segsuite run [DOMAIN]``: segment inputs through a domain's pipeline and the core executor.

``run`` is a command group with one sub-command per installed domain, generated from what
each domain's pipeline declares (:class:`segsuite.core.pipeline.RunOption`): every domain's
options appear in ``segsuite run DOMAIN --help`` and nowhere else, and a third-party domain
gets its own options without any change here. ``segsuite run --input ... --model CKPT``
without a domain takes the domain from the checkpoint's card (the core's 2D image pipeline
when the card names none).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from segsuite.core.engines import ENGINE_HELP

from .common import card_of, domain, engine_settings, execute_job, not_implemented, require_path

COMMON_HELP = {
    "input": "File, folder (searched recursively) or glob; repeat --input for several",
    "model": "segsuite checkpoint (default: the domain's shipped model)",
    "output": "Output folder (or, for one input, the output file where the domain allows it)",
    "report": "Also write an HTML report of the results (index.html and its pictures) into this folder",
    "device": "auto, cpu, cuda or cuda:N",
    "runtime": "torch, or onnx (ONNX Runtime on the CPU; --model must be a segsuite .onnx export)",
    "skip_existing": "Skip inputs whose outputs are all there already (resume an interrupted batch)",
    "allow_domain_mismatch": "Run a model whose card names another domain than this command's (refused by default)",
    **ENGINE_HELP,
}
ENGINE_DEFAULTS = {"engine": "local", "address": None, "workers": None, "gpus_per_worker": None}


def _common_parameters() -> list[inspect.Parameter]:
    def opt(name: str, kind: Any, default: Any, *decls: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[kind, typer.Option(*decls, help=COMMON_HELP[name])])

    return [
        opt("input", Optional[list[str]], None, "--input", "-i"),
        opt("model", Optional[Path], None, "--model"),
        opt("output", Optional[Path], None, "--output", "-o"),
        opt("report", Optional[Path], None, "--report"),
        opt("device", str, "auto", "--device"),
        opt("runtime", str, "torch", "--runtime"),
        opt("skip_existing", bool, False, "--skip-existing"),
        opt("allow_domain_mismatch", bool, False, "--allow-domain-mismatch"),
        opt("engine", str, "local", "--engine"),
        opt("address", Optional[str], None, "--address"),
        opt("workers", Optional[int], None, "--workers"),
        opt("gpus_per_worker", Optional[float], None, "--gpus-per-worker"),
    ]


def _option_parameter(opt: Any) -> inspect.Parameter:
    """The typer parameter for a declared :class:`RunOption` (checked again by ``RunOption.check``)."""
    text = opt.help
    if opt.choices:
        text += f" (one of: {', '.join(opt.choices)})"
    if opt.default is not None and opt.type is not bool:
        text += f" [default: {opt.default}]"
    if opt.type is bool:  # a switch; one that is on by default gets its --no- form
        decl = f"{opt.flag}/--no-{opt.flag[2:]}" if opt.default is True else opt.flag
        info = typer.Option(decl, help=text + (" [default: on]" if opt.default is True else ""), show_default=False)
        kind: Any = Optional[bool]
    else:
        info = typer.Option(opt.flag, help=text, show_default=False)
        kind = Optional[opt.type]
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, info])


def _with_signature(func: Callable[..., None], parameters: list[inspect.Parameter], doc: str) -> Callable[..., None]:
    """Give ``func(**params)`` the typed signature typer builds its options from."""
    func.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in parameters}
    func.__doc__ = doc
    return func


def _pipeline_for(dom: Any) -> Any:
    """The domain's pipeline, or the core's 2D image pipeline with the domain's readers."""
    if dom is not None and dom.pipeline is not None:
        return dom.pipeline
    from segsuite.core.image_pipeline import ImagePipeline

    if dom is None:
        return ImagePipeline()
    if dom.spatial_dims != 2:
        raise not_implemented("run", f"a pipeline for {dom.name} ({dom.spatial_dims}D) inputs")
    return ImagePipeline(reader=lambda p: dom.reader_for(p)(p), suffixes=tuple(dom.readers), name=dom.name)


def run_domain(dom: Any, pipeline: Any, params: dict[str, Any], debug: bool) -> None:
    """Shared body of ``segsuite run DOMAIN`` and ``segsuite run`` (domain from the card)."""
    from segsuite.core.errors import SegsuiteError
    from segsuite.core.jobs import Job
    from segsuite.core.pipeline import check_options

    if params.get("input") is None:
        raise SegsuiteError("--input is required (a file, folder or glob)")
    engine = engine_settings(*(params.get(k) for k in ENGINE_DEFAULTS))
    common = {p.name for p in _common_parameters()}
    given = {k: v for k, v in params.items() if k not in common and v is not None}
    options = check_options(pipeline.options, given)  # before any input is read
    suffixes = pipeline.suffixes or (tuple(dom.readers) if dom is not None else None)
    from segsuite.core.jobs import JobConsole
    from segsuite.core.planning import expand_for

    inputs: list[Path] = []
    for spec in params["input"]:  # several --input: their inputs in the order given, each once
        inputs += [p for p in expand_for(pipeline, spec, suffixes, JobConsole().warning) if p not in inputs]
    model = params.get("model")
    if model is None:
        if dom is None:
            raise SegsuiteError("--model is required without a domain (or name one: segsuite run DOMAIN --input ...)")
        from segsuite.core.sample_data import shipped_model

        model = shipped_model(dom)
    require_path(model, "checkpoint (--model)", kind="file")
    if params.get("runtime") not in (None, "torch", "onnx"):
        raise SegsuiteError(f"--runtime {params['runtime']!r}: choose torch or onnx")
    if params.get("runtime") == "onnx" and not str(model).lower().endswith(".onnx"):
        raise SegsuiteError(f"{model}: --runtime onnx needs an .onnx file; make one with `segsuite export --model {model}`")
    name = dom.name if dom is not None else None
    card = card_of(model)  # the model must suit the command before any input is read
    card.check_domain(name, model, allow=bool(params.get("allow_domain_mismatch")))
    from segsuite.core.engines import PipelineRecipe

    job = Job(pipeline=pipeline, inputs=inputs, checkpoint=Path(model), output=params.get("output"), options=options,
              device=params.get("device") or "auto", skip_existing=bool(params.get("skip_existing")),
              command=f"run {name}" if name else "run",
              recipe=PipelineRecipe("segsuite.cli.run:pipeline_for_domain", (name,)))
    execute_job(job, report=params.get("report"), class_map=card.classes if params.get("report") is not None else None,
                title=f"segsuite run {name or ''}".strip(), debug=debug, engine=engine)


def pipeline_for_domain(name: str | None) -> Any:
    """The pipeline ``segsuite run NAME`` uses (``None``: the core's 2D image pipeline), built from
    the plugin registry: how a Ray worker rebuilds a ``run`` job's pipeline."""
    return _pipeline_for(domain(name))


def _debug(ctx: Any) -> bool:
    from .app import debug_enabled

    return debug_enabled(ctx)


CTX = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def domain_command(dom: Any) -> Callable[..., None]:
    """``segsuite run DOMAIN`` for one installed domain, with its pipeline's declared options."""
    from segsuite.core.errors import SegsuiteError

    try:
        pipeline = _pipeline_for(dom)
        declared = list(pipeline.options)
    except SegsuiteError:  # a 3D domain without a pipeline: the command says so when it is run
        pipeline, declared = None, []

    def command(ctx: typer.Context, **params: Any) -> None:
        run_domain(dom, pipeline if pipeline is not None else _pipeline_for(dom), params, _debug(ctx))

    outputs = "; ".join(dom.outputs) if dom.outputs else "the domain's outputs"
    doc = (f"{dom.description}.\n\nWrites per input: {outputs}; per job: summary.json and summary.csv "
           "(a failed input is listed there and the others go on; exit status 2).")
    return _with_signature(command, [CTX, *_common_parameters(), *(_option_parameter(o) for o in declared)], doc)


class RunGroup(TyperGroup):
    """Sub-commands are the installed domains; an unknown one is a one-line error with suggestions."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and self.get_command(ctx, name) is None:
            domain(name)  # raises UnknownNameError with did-you-mean
        return super().resolve_command(ctx, args)


def build_run_app(registry: Any) -> typer.Typer:
    """The ``run`` sub-app for the domains in ``registry``."""

    def generic(ctx: typer.Context, **params: Any) -> None:
        if ctx.invoked_subcommand is not None:
            given = [k for k, v in params.items() if v not in (None, False, "auto", "torch") and ENGINE_DEFAULTS.get(k, ...) != v]
            if given:
                from segsuite.core.errors import SegsuiteError

                raise SegsuiteError(f"put the options after the domain: segsuite run {ctx.invoked_subcommand} "
                                    f"--{given[0].replace('_', '-')} ...")
            return
        if params.get("model") is None and params.get("input") is None:
            typer.echo(ctx.get_help())
            return
        dom = None
        if params.get("model") is not None:
            require_path(params["model"], "checkpoint (--model)", kind="file")
            card = card_of(params["model"])
            if card.domain:
                dom = domain(card.domain)
        run_domain(dom, _pipeline_for(dom), params, _debug(ctx))

    doc = ("Segment images or volumes with a domain's pipeline; writes its outputs plus summary.json.\n\n"
           "`segsuite run DOMAIN --input ...` uses the domain's pipeline and shipped model; "
           "`segsuite run DOMAIN --help` lists that domain's options. Without a domain, --model is required "
           "and the domain comes from its model card (2D images when it names none).")
    app = typer.Typer(cls=RunGroup, invoke_without_command=True, add_completion=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})
    from segsuite.core.image_pipeline import ImagePipeline

    generic_options = [_option_parameter(o) for o in ImagePipeline.options]
    app.callback(help=doc)(_with_signature(generic, [CTX, *_common_parameters(), *generic_options], doc))
    for name, dom in sorted(registry.domains.items()):
        app.command(name, help=domain_command(dom).__doc__, short_help=dom.description)(domain_command(dom))
    return app
