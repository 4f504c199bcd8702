"""``segsuite run``: predict on new inputs and write the domain's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import domain, expand_inputs, not_implemented, require_path


def run(
    domain_name: Annotated[Optional[str], typer.Argument(metavar="[DOMAIN]", help="Domain (default: from the checkpoint)")] = None,
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="File, folder or glob")] = None,
    model: Annotated[Optional[Path], typer.Option(help="segsuite checkpoint (default: the domain's shipped model)")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output folder")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report of the results (index.html and its pictures) into this folder")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    runtime: Annotated[str, typer.Option(help="torch, or onnx (ONNX Runtime on the CPU; --model must be a segsuite .onnx export)")] = "torch",
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold on the defect/foreground probability (domains that use one)")] = None,
    min_area: Annotated[Optional[int], typer.Option(help="Drop detected regions smaller than this many pixels (domains that use it)")] = None,
    pixel_size: Annotated[Optional[float], typer.Option(help="Physical pixel size in mm, for areas in mm² (domains that use it)")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="Output label format, e.g. cityscapes (domains that offer one)")] = None,
    smooth: Annotated[Optional[float], typer.Option(help="Video: temporal smoothing weight of the newest frame, 0-1 (driving)")] = None,
    keep_largest: Annotated[Optional[bool], typer.Option("--keep-largest", help="Volumes: keep only the largest component per class (medical)")] = None,
    fill_holes: Annotated[Optional[bool], typer.Option("--fill-holes", help="Volumes: fill enclosed holes per class (medical)")] = None,
    min_volume: Annotated[Optional[float], typer.Option(help="Volumes: remove components smaller than this many mL (medical)")] = None,
    uncertainty: Annotated[Optional[str], typer.Option(help="Also write an uncertainty map: entropy (free), tta (flips: 2-8x the time) or mcdropout (8x; models with dropout)")] = None,
    probabilities: Annotated[Optional[bool], typer.Option("--probabilities", help="Also write per-class probabilities (medical: 4D NIfTI on the input grid)")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta", help="Average mirrored passes (3D: 8 passes, about 8x the time; medical)")] = None,
    fast: Annotated[Optional[bool], typer.Option("--fast", help="Speed preset: no TTA, 25% window overlap instead of 50% (medical)")] = None,
) -> None:
    """Segment images or volumes and write labels, colour labels, overlays and a JSON summary per input."""
    from segsuite.core import tasks
    from segsuite.core.checkpoint import read_card
    from segsuite.core.data.images import IMAGE_SUFFIXES
    from segsuite.core.errors import SegsuiteError

    dom = domain(domain_name)
    if input is None:
        raise typer.BadParameter("--input is required")
    if uncertainty is not None:
        from segsuite.core.uncertainty import check_method

        check_method(uncertainty)
    if report is not None:
        from segsuite.core.report import check_report_folder

        check_report_folder(report)
    inputs = expand_inputs(input, tuple(dom.readers) if dom is not None else IMAGE_SUFFIXES)
    if model is None and dom is not None and dom.runner is not None:
        from segsuite.core.sample_data import default_checkpoint

        model = default_checkpoint(dom.name)
    if model is None:
        where = f"the {dom.name} domain" if dom is not None else "a run without a domain"
        raise not_implemented("run", f"a shipped default model for {where} (pass --model CKPT)")
    require_path(model, "checkpoint (--model)", kind="file")
    is_onnx = str(model).lower().endswith(".onnx")
    if runtime not in ("torch", "onnx"):
        raise SegsuiteError(f"--runtime {runtime!r}: choose torch or onnx")
    if runtime == "onnx" and not is_onnx:
        raise SegsuiteError(f"{model}: --runtime onnx needs an .onnx file; make one with `segsuite export --model {model}`")
    if is_onnx:
        from segsuite.core.export import OnnxSegmentationModel

        card = OnnxSegmentationModel(model).card
    else:
        card = read_card(model)
    if dom is None and card.domain:
        dom = domain(card.domain)
    extra = {k: v for k, v in {"threshold": threshold, "min_area": min_area, "pixel_size": pixel_size,
                                "label_format": format, "smooth": smooth, "keep_largest": keep_largest,
                                "fill_holes": fill_holes, "min_volume": min_volume,
                                "uncertainty": uncertainty, "probabilities": probabilities, "tta": tta,
                                "fast": fast}.items() if v is not None}
    if dom is not None and dom.runner is not None:
        import inspect

        accepted = inspect.signature(dom.runner).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        unknown = [] if takes_any else [k for k in extra if k not in accepted]
        if unknown:
            raise SegsuiteError(f"the {dom.name} domain does not use --{_flag(unknown[0])}")
        summaries = dom.runner(inputs, model, output, device=device, **extra)
        typer.echo(f"wrote {len(summaries)} result(s)")
        if report is not None:
            _report(report, dom, summaries, output, card.classes)
        return
    extra.pop("uncertainty", None)  # the generic image path writes it itself
    if extra:
        raise SegsuiteError(f"--{_flag(next(iter(extra)))} needs a domain that uses it (e.g. segsuite run industrial)")
    if dom is not None and (dom.spatial_dims != 2 or dom.writers):
        raise not_implemented("run", f"writing {dom.name} outputs ({', '.join(dom.outputs)})")
    reader = None
    if dom is not None:
        reader = lambda p: dom.reader_for(p)(p)  # noqa: E731
    out = output or Path("segsuite-run")
    summaries = tasks.predict_images(model, inputs, out, device=device, reader=reader, uncertainty=uncertainty)
    typer.echo(f"wrote {len(inputs)} result(s) to {out}")
    if report is not None:
        from segsuite.core.report import predictions_section, write_report

        section = predictions_section(summaries, out, card.classes, domain=dom.name if dom is not None else "run")
        typer.echo(f"report: {write_report(report, [section], title=f'segsuite run: {len(summaries)} image(s)')}")


def _report(folder: Path, dom, summaries: list, output: Path | None, class_map) -> None:
    """``--report`` for a domain's own runner: the domain's section, or a table of what the runner returned."""
    from segsuite.core.report import summaries_section, write_report

    if dom.run_report is not None:
        section = dom.run_report(summaries, output, class_map, folder)
    else:
        section = summaries_section(dom.name, summaries, class_map)
    typer.echo(f"report: {write_report(folder, [section], title=f'segsuite run {dom.name}: {len(summaries)} result(s)')}")


def _flag(option: str) -> str:
    """The command-line spelling of a runner keyword (``label_format`` is ``--format``)."""
    return {"label_format": "format"}.get(option, option).replace("_", "-")
