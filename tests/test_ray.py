"""The Ray engine: the same jobs on a local in-process cluster give the local engine's outputs,
file for file; failures (an exception, a killed worker) fail one input; interruption, resume,
warnings and set-up errors behave as with the local engine.

One cluster (2 CPUs, no dashboard, no usage statistics) serves the whole session and is shut
down at its end; the fixture checks that no Ray process outlives it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error
from segsuite.core.engines import EngineSettings, PipelineRecipe
from segsuite.core.errors import SegsuiteError
from segsuite.core.jobs import Job, run_job
from segsuite.core.pipeline import BasePipeline

TIMING = {"seconds", "model_seconds", "megapixels_per_second", "started"}
QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}


def _ray_children(pid: int) -> list[str]:
    """Processes whose parent is ``pid`` (Ray's GCS, raylet and workers are the driver's children)."""
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip() and "ps" != line.split()[-1]]


@pytest.fixture(scope="session")
def ray_cluster():
    import logging

    import ray

    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    from segsuite.core.ray_cluster import quiet_driver

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             object_store_memory=128 * 1024 * 1024)
    quiet_driver(ray)  # as the engine does when it starts or joins a cluster
    yield ray
    ray.shutdown()
    deadline = time.monotonic() + 20
    while _ray_children(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_children(os.getpid()) == [], "Ray processes outlived ray.shutdown()"


@pytest.fixture
def one_thread():
    """The local run with the threads each of two workers on the 2-CPU cluster gets (one):
    PyTorch's CPU kernels split their reductions by thread, so float outputs (probabilities,
    uncertainty, confidences) are equal bit for bit only at equal thread counts (docs/cluster.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- comparing two output folders ---------------------------------------------------------


def _strip(value, here: str, there: str):
    if isinstance(value, dict):
        return {k: _strip(v, here, there) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_strip(v, here, there) for v in value]
    if isinstance(value, str):
        return value.replace(here, there)
    return value


def assert_same_outputs(local: Path, distributed: Path) -> int:
    """Every file of ``local`` is in ``distributed``: JSON equal apart from timings and the folder's
    name, summary.csv equal apart from seconds, everything else byte for byte. Returns the count."""
    names = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(distributed) for p in distributed.rglob("*") if p.is_file())
    for name in names:
        a, b = local / name, distributed / name
        if name.suffix == ".json":
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            if name.name == ".segsuite-outputs.json":
                assert sorted(ja["files"]) == sorted(jb["files"])
                continue
            assert _strip(ja, str(local), str(distributed)) == _strip(jb, str(distributed), str(distributed)), name
        elif name.name == "summary.csv":
            rows_a = [{k: v.replace(str(local), str(distributed)) for k, v in r.items() if k != "seconds"}
                      for r in csv.DictReader(a.open())]
            rows_b = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(b.open())]
            assert rows_a == rows_b
        elif name.suffix == ".gpkg":  # SQLite pages carry a write time: compare the features
            assert _features(a) == _features(b), f"{name} differs"
        elif name.suffix == ".tif":
            # A GeoTIFF written window by window can hold dead copies of a tile (GDAL flushes a dirty
            # tile when its threads' timing says so, in one process as well): compare the content.
            # Class COGs are rewritten whole by the COG copy, so they must match byte for byte.
            assert _raster(a) == _raster(b), f"{name} differs"
            if _raster(a)[0].get("LAYOUT") == "COG":
                assert a.read_bytes() == b.read_bytes(), f"{name} differs"
        else:
            assert a.read_bytes() == b.read_bytes(), f"{name} differs"
    return len(names)


def _raster(path: Path) -> tuple:
    """Everything a reader sees: structure, georeferencing, tags, colour table, pixels and overviews."""
    import rasterio

    with rasterio.open(path) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
        colormap = src.colormap(1) if src.count == 1 and src.dtypes[0] == "uint8" and _has_colormap(src) else None
        pixels = [src.read().tobytes()]
        for level in range(len(src.overviews(1))):
            with rasterio.open(path, overview_level=level) as ov:
                pixels.append(ov.read().tobytes())
        return (structure, dict(src.profile), src.tags(), [src.tags(b) for b in src.indexes], colormap, pixels)


def _has_colormap(src) -> bool:
    try:
        src.colormap(1)
    except ValueError:
        return False
    return True


def _features(path: Path) -> tuple:
    from pyogrio.raw import read

    meta, _fids, geometry, fields = read(path)
    return meta["crs"], list(meta["fields"]), [bytes(g) for g in geometry], [list(f) for f in fields]


def _both(cli, tmp_path: Path, *args: str, ray_args: tuple[str, ...] = ("--engine", "ray", "--workers", "2"),
          out: str = "--output") -> tuple[Path, Path]:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    r1 = cli(*args, out, local)
    assert r1.exit_code == 0, r1.output
    r2 = cli(*args, out, distributed, *ray_args)
    assert r2.exit_code == 0, r2.output
    return local, distributed


# -- the domains' jobs, local against Ray ---------------------------------------------------


@pytest.mark.slow
def test_run_industrial_on_ray_writes_the_local_engines_files(cli, ray_cluster, one_thread, tmp_path):
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=5, size=(128, 128), seed=4) / "images"
    local, distributed = _both(cli, tmp_path, "run", "industrial", "--input", parts)
    assert assert_same_outputs(local, distributed) >= 5 * 4 + 2


@pytest.mark.slow
def test_run_medical_on_ray_writes_the_local_engines_files(cli, ray_cluster, one_thread, tmp_path):
    from segsuite.plugins.medical.synthetic import make_phantom_dataset

    cases = make_phantom_dataset(tmp_path / "med", n=2, seed=5) / "imagesTr"
    local, distributed = _both(cli, tmp_path, "run", "medical", "--input", cases)
    assert assert_same_outputs(local, distributed) >= 2 * 2 + 2


@pytest.mark.slow
def test_tile_a_folder_on_ray_runs_each_scene_whole_and_matches(cli, ray_cluster, one_thread, tmp_path):
    from segsuite.plugins.satellite.synthetic import make_scenes

    scenes = make_scenes(tmp_path / "scenes", n=3, size=(160, 192), seed=6) / "images"
    local, distributed = _both(cli, tmp_path, "tile", scenes, "--tile", "64", "--overlap", "16")
    assert assert_same_outputs(local, distributed) == 3 * 2 + 3


def _big_scene(path: Path, size: int = 512, seed: int = 8, georeferenced: bool = True) -> Path:
    from segsuite.plugins.satellite.synthetic import render_scene, write_scene

    image, _ = render_scene(np.random.default_rng(seed), (size, size))  # a nodata border too
    if georeferenced:
        return write_scene(path, image)
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=image.shape[0],
                       dtype=image.dtype.name) as dst:
        dst.write(image)
    return path


@pytest.mark.slow
def test_one_scene_split_into_bands_equals_the_single_process_output(cli, ray_cluster, one_thread, tmp_path):
    """Three bands of a 512² scene with 64-px windows (11 window rows), every extra output asked
    for: the class COG, probabilities, entropy, polygons and the record are those of one process."""
    import rasterio

    scene = _big_scene(tmp_path / "big.tif")
    common = ("tile", scene, "--tile", "64", "--overlap", "16", "--batch", "3", "--probabilities",
              "--uncertainty", "entropy")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    r1 = cli(*common, "--output", local / "big_classes.tif", "--vector", local / "big.gpkg")
    assert r1.exit_code == 0, r1.output
    r2 = cli(*common, "--output", distributed / "big_classes.tif", "--vector", distributed / "big.gpkg",
             "--engine", "ray", "--workers", "2", "--row-bands", "3")
    assert r2.exit_code == 0, r2.output
    assert assert_same_outputs(local, distributed) == 5 + 3  # classes, json, probabilities, uncertainty, gpkg
    with rasterio.open(local / "big_classes.tif") as a, rasterio.open(distributed / "big_classes.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
        assert (a.read(1) == 255).any() and len(np.unique(a.read(1))) > 2  # nodata border and several classes
    assert not list(distributed.glob(".*partial*")), "band parts left behind"


@pytest.mark.slow
def test_a_lone_scene_is_split_between_the_workers_by_default_and_warns_once(cli, ray_cluster, one_thread, tmp_path, monkeypatch):
    from segsuite.plugins.satellite import bands

    seen = []
    original = bands.split_scene

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(bands, "split_scene", spy)
    scene = _big_scene(tmp_path / "lone.tif", size=384, seed=9, georeferenced=False)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    args = ("tile", scene, "--tile", "64", "--overlap", "8", "--no-cog")
    assert cli(*args, "--output", local).exit_code == 0
    result = cli(*args, "--output", distributed, "--engine", "ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert [len(b) for b in seen] == [2]  # one scene, two workers: two bands
    assert assert_same_outputs(local, distributed) == 2 + 3
    # the scene's warning, from the first band's worker, once
    lines = [ln for ln in result.stderr.splitlines() if "not georeferenced" in ln]
    assert len(lines) == 1 and lines[0].startswith("segsuite: warning: ")


@pytest.mark.slow
def test_explain_on_ray_matches(cli, ray_cluster, one_thread, tmp_path):
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=3, size=(96, 96), seed=10) / "images"
    local, distributed = _both(cli, tmp_path, "explain", "industrial", "--class", "scratch", "--input", parts)
    assert assert_same_outputs(local, distributed) == 3 * 3 + 3


# -- failures, resume, interruption -------------------------------------------------------


class TextCrashPipeline(BasePipeline):
    """Upper-cases text; ``crash`` kills its worker process every time, ``crash-once:MARKER``
    the first time only, ``bad`` is a user error, ``warn`` warns both ways."""

    suffixes = (".txt",)

    def load(self, checkpoint, options, device):
        return {"pid": os.getpid()}

    def outputs(self, source, stem, folder, options, file=None):
        return {"upper": folder / f"{stem}_upper.txt", "record": folder / f"{stem}.json"}

    def run_one(self, source, outputs, context):
        from segsuite.core.io import atomic_path

        text = source.read_text().strip()
        if text == "crash":
            os._exit(1)
        if text.startswith("crash-once:"):
            marker = Path(text.split(":", 1)[1])
            if not marker.exists():
                marker.write_text("died once")
                os._exit(1)
        if text == "bad":
            raise SegsuiteError(f"{source}: says bad")
        if text == "warn":
            context.warn(f"{source}: looks odd")
            warnings.warn("a library's warning", RuntimeWarning, stacklevel=1)
        with atomic_path(outputs["upper"]) as tmp:
            tmp.write_text(text.upper())
        return {"chars": len(text), "worker": context.model["pid"]}

    def describe(self, record):
        return f"{Path(record['input']).name}: ok"


def _ray_engine(workers: int = 2):
    from segsuite.core.engines import make_engine

    return make_engine(EngineSettings(kind="ray", workers=workers))


def _text_job(tmp_path: Path, texts: dict[str, str]) -> Job:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_text("no weights")
    return Job(pipeline=TextCrashPipeline(), inputs=sorted(folder.glob("*.txt")), checkpoint=checkpoint,
               output=tmp_path / "out")  # no recipe: the pipeline object itself goes to the workers


@pytest.fixture
def this_module_by_value(ray_cluster):
    """Workers cannot import this test module: send it by value."""
    module = sys.modules[__name__]
    ray_cluster.cloudpickle.register_pickle_by_value(module)
    yield
    ray_cluster.cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_input_and_a_lost_input_is_tried_again(ray_cluster, this_module_by_value,
                                                                               tmp_path, capsys):
    marker = tmp_path / "died-once"
    job = _text_job(tmp_path, {"a": "alpha", "b": "crash", "c": f"crash-once:{marker}", "d": "bad", "e": "echo",
                               "f": "warn"})
    with pytest.warns(RuntimeWarning, match="a library's warning"):  # a Python warning in a worker, shown here
        result = run_job(job, engine=_ray_engine())
    status = {r.source.stem: r.status for r in result.results}
    assert status == {"a": "ok", "b": "failed", "c": "ok", "d": "failed", "e": "ok", "f": "ok"}
    assert result.exit_code == 2
    assert marker.exists()  # c's first worker really died; its retry wrote the output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*_upper.txt")) == ["a_upper.txt", "c_upper.txt", "e_upper.txt", "f_upper.txt"]
    assert (out / "c_upper.txt").read_text() == f"CRASH-ONCE:{str(marker).upper()}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 4, "failed": 2, "skipped": 0, "not run": 0}
    errors = {Path(e["input"]).stem: e["error"] for e in summary["inputs"] if e["error"]}
    assert "the worker running it died" in errors["b"] and "says bad" in errors["d"]
    assert not list(out.glob(".*partial*"))
    captured = capsys.readouterr()
    err = captured.err
    assert "segsuite: warning: " in err and "f.txt: looks odd" in err  # context.warn from a worker
    assert "raylet" not in captured.out + err  # Ray's own feed about the dead worker stays in its logs
    assert "2 of 6 failed" in err


@pytest.mark.slow
def test_failed_input_exit_2_then_skip_existing_reruns_only_it(cli, ray_cluster, tmp_path):
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=3, size=(96, 96), seed=11) / "images"
    (parts / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    args = ("run", "industrial", "--input", parts, "--output", out, "--engine", "ray", "--workers", "2")
    first = cli(*args)
    assert first.exit_code == 2, first.output
    errors = [ln for ln in first.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "1 of 4 failed" in errors[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 3, "failed": 1, "skipped": 0, "not run": 0}
    second = cli(*args, "--skip-existing")
    assert second.exit_code == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 0, "failed": 1, "skipped": 3, "not run": 0}


@pytest.mark.slow
def test_sigterm_stops_a_ray_job_cleanly_and_leaves_no_ray_process(tmp_path, segsuite_proc):
    """The real CLI with its own local cluster: SIGTERM after the first result exits 143, writes
    the summary with the rest "not run", leaves no partial file and no Ray process behind."""
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=40, size=(256, 256), seed=13) / "images"
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, **QUIET, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    code = "import sys; from segsuite.cli.app import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "industrial", "--input", str(parts), "--output", str(out),
                             "--engine", "ray", "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.strip(), proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM" and summary["counts"]["not run"] > 0
    assert not list(out.glob(".*partial*"))
    for entry in summary["inputs"]:  # an input not finished has no files at all
        if entry["status"] != "ok":
            assert not any(Path(p).exists() for p in entry["outputs"].values()), entry
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _processes_under(ray_tmp):
        time.sleep(0.2)
    assert _processes_under(ray_tmp) == []


def _processes_under(folder: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if folder in line and "ps -eo" not in line]


# -- set-up errors -------------------------------------------------------------------------


def test_engine_ray_without_ray_installed_says_what_to_install(cli, tmp_path, monkeypatch):
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=1, size=(64, 64), seed=14) / "images"
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = cli("run", "industrial", "--input", parts, "--output", tmp_path / "out", "--engine", "ray")
    assert_one_line_error(result, "--engine ray", "pip install 'segsuite[ray]'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragment", [
    (("--workers", "2"), "--workers only applies to --engine ray"),
    (("--engine", "ray", "--workers", "0"), "--workers 0: must be at least 1"),
    (("--engine", "ray", "--gpus-per-worker", "-1"), "--gpus-per-worker -1.0"),
    (("--engine", "ray", "--gpus-per-worker", "1.5"), "whole number of GPUs"),
    (("--engine", "spark"), "--engine 'spark': choose one of local, ray"),
])
def test_engine_options_are_checked_before_any_input_is_read(cli, tmp_path, args, fragment):
    result = cli("run", "industrial", "--input", tmp_path / "missing", *args)
    assert_one_line_error(result, fragment)


def test_an_address_nobody_answers_on_is_a_one_line_error(tmp_path, segsuite_proc):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scene = _big_scene(tmp_path / "s.tif", size=64, seed=17)
    result = segsuite_proc("tile", scene, "--engine", "ray", "--address", f"127.0.0.1:{port}", env=QUIET)
    assert_one_line_error(result, f"--address 127.0.0.1:{port}: no Ray cluster answers there")
    assert not (tmp_path / "s_classes.tif").exists()


def test_row_bands_only_with_ray(cli, tmp_path):
    scene = _big_scene(tmp_path / "s.tif", size=64, seed=15)
    assert_one_line_error(cli("tile", scene, "--row-bands", "2"), "--row-bands only applies to --engine ray")


@pytest.mark.slow
def test_more_workers_than_the_cluster_holds_is_a_one_line_error(cli, ray_cluster, tmp_path):
    from segsuite.plugins.industrial.synthetic import make_parts

    parts = make_parts(tmp_path / "parts", n=1, size=(64, 64), seed=16) / "images"
    result = cli("run", "industrial", "--input", parts, "--output", tmp_path / "out", "--engine", "ray", "--workers", "5")
    assert_one_line_error(result, "--workers 5", "room for 2 worker(s)")


def test_worker_plan_fits_cpus_and_gpu_shares_on_each_node():
    from segsuite.core.ray_cluster import plan_workers

    nodes = [{"Alive": True, "Resources": {"CPU": 8, "GPU": 1}}, {"Alive": True, "Resources": {"CPU": 4}},
             {"Alive": False, "Resources": {"CPU": 64}}]
    assert plan_workers(nodes, None, 0) == (12, 1)
    assert plan_workers(nodes, 3, 0) == (3, 4)  # 8 -> two of 4 CPUs, 4 -> one
    assert plan_workers(nodes, 2, 0.5) == (2, 4)  # two halves of the one GPU, on the 8-CPU node
    assert plan_workers(nodes, None, 0.25) == (4, 2)
    with pytest.raises(SegsuiteError, match="room for 1 worker"):
        plan_workers(nodes, 2, 1)


def test_recipes_rebuild_the_commands_pipelines():
    from segsuite.cli.explain import explain_pipeline
    from segsuite.plugins.satellite.pipeline import TilingPipeline

    assert isinstance(PipelineRecipe("segsuite.plugins.satellite.pipeline:TilingPipeline").build(), TilingPipeline)
    run = PipelineRecipe("segsuite.cli.run:pipeline_for_domain", ("industrial",)).build()
    assert run.name == "industrial"
    explainer = PipelineRecipe("segsuite.cli.explain:explain_pipeline", ("satellite", "water", None)).build()
    assert type(explainer) is type(explain_pipeline("satellite", "water", None)) and explainer.class_name == "water"

