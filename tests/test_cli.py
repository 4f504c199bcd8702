"""The command line: help, version, plugin listing and every user-error path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error

CORE_COMMANDS = ["plugins", "models", "train", "evaluate", "run", "split", "export", "bench", "demo", "labels", "sample"]


def test_help_lists_core_and_plugin_commands(cli):
    res = cli("--help")
    assert res.exit_code == 0
    for name in [*CORE_COMMANDS, "tile", "stats"]:
        assert f"\n  {name} " in res.stdout, name


@pytest.mark.parametrize("command", [*CORE_COMMANDS, "tile", "stats"])
def test_every_command_explains_itself(cli, command):
    res = cli(command, "--help")
    assert res.exit_code == 0, res.output
    body = res.stdout.split("\n\n", 2)[1].strip()
    assert len(body) > 30, f"`segsuite {command} --help` says too little: {body!r}"


def test_version(cli):
    from importlib.metadata import version

    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"segsuite {version('segsuite')}"


def test_plugins_lists_the_four_domains_with_classes(cli):
    res = cli("plugins")
    assert res.exit_code == 0
    for name in ("driving", "medical", "industrial", "satellite"):
        assert f"{name}  (built-in; segsuite.plugins.{name}.plugin)" in res.stdout
    assert "classes [cityscapes] (19): road, sidewalk," in res.stdout
    assert "commands: tile, stats" in res.stdout


def test_plugins_json(cli):
    res = cli("plugins", "--json")
    data = json.loads(res.stdout)
    medical = next(p for p in data["plugins"] if p["name"] == "medical")
    (dom,) = medical["domains"]
    assert dom["spatial_dims"] == 3 and dom["readers"] == [".nii", ".nii.gz"]
    assert data["failures"] == []


def test_help_does_not_import_the_heavy_stack():
    code = (
        "import sys\n"
        "from segsuite.cli.app import main\n"
        "rc = main(['--help'])\n"
        "heavy = [m for m in ('torch', 'monai', 'rasterio', 'nibabel', 'cv2') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "nosuchdomain", "--input", "x.png"], ["unknown domain 'nosuchdomain'", "available: driving, industrial, medical, satellite"]),
        (["train", "nosuchdomain", "--data", "."], ["unknown domain 'nosuchdomain'"]),
        (["evaluate", "nosuchdomain"], ["unknown domain 'nosuchdomain'"]),
        (["run", "medical", "--input", "{tmp}/missing.nii.gz"], ["missing.nii.gz: input not found"]),
        (["run", "medical", "--input", "{tmp}/*.nii.gz"], ["*.nii.gz: no input files with suffix .nii, .nii.gz"]),
        (["tile", "{tmp}/missing.tif"], ["missing.tif: input not found"]),
        (["train", "--data", "{tmp}/nodata"], ["nodata: training data (--data) not found"]),
        (["evaluate", "--model", "{tmp}/missing.pt", "--data", "{tmp}"], ["missing.pt: checkpoint (--model) not found"]),
        (["evaluate", "--model", "{tmp}", "--data", "{tmp}"], ["checkpoint (--model) must be a file"]),
        (["export", "--model", "{tmp}/missing.pt"], ["missing.pt: checkpoint not found"]),
        (["split", "{tmp}/nothing"], ["nothing: dataset not found"]),
    ],
)
def test_user_errors_are_one_line_exit_2(cli, tmp_path, args, fragments):
    res = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line_error(res, *fragments)


def test_debug_shows_the_traceback(cli):
    res = cli("--debug", "run", "nosuchdomain", "--input", "x.png")
    assert res.exit_code != 0
    assert res.exception is not None and "unknown domain" in str(res.exception)


def test_console_entry_point_reports_errors_the_same_way(segsuite_proc, tmp_path):
    res = segsuite_proc("tile", tmp_path / "gone.tif")
    assert_one_line_error(res, "gone.tif: input not found")
    res = segsuite_proc("--debug", "tile", tmp_path / "gone.tif")
    assert res.returncode == 1 and "Traceback" in res.stderr and "InputFileError" in res.stderr


def test_unknown_command_and_option_are_usage_errors(cli):
    assert cli("frobnicate").exit_code == 2
    assert cli("plugins", "--bogus").exit_code == 2


def test_models_lists_the_zoo(cli):
    res = cli("models")
    assert res.exit_code == 0
    for name in ("fcn", "unet", "unet3d", "pspnet", "deeplabv3", "deeplabv3plus", "segnet", "lraspp_mobilenet_v3"):
        assert any(line.startswith(name + " ") for line in res.stdout.splitlines()), name
    res = cli("models", "deeplab*", "--json")
    assert [m["name"] for m in json.loads(res.stdout)] == ["deeplabv3", "deeplabv3plus"]
    assert cli("models", "nothing*").exit_code == 1


def test_unimplemented_commands_say_so_and_fail(cli, tmp_path, monkeypatch):
    from segsuite.core.checkpoint import ModelCard, save_checkpoint
    from segsuite.core.models import build_model
    from segsuite.core.plugins import load_plugins

    model = build_model("segnet", 1, 2, spatial_dims=3, registry=load_plugins(entry_points=False), widths=[4])
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model,
                           ModelCard(model=model.card(), class_map={"names": ["bg", "organ"]}, domain=None))
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    empty_samples = tmp_path / "samples"
    empty_samples.mkdir()
    monkeypatch.setenv("SEGSUITE_SAMPLE_DATA", str(empty_samples))  # a checkout that ships no medical model
    cases = [
        (["run", "medical", "--input", tmp_path / "scan.nii.gz"], "no default medical model is shipped yet"),
        (["evaluate", "--model", ckpt, "--data", tmp_path], "evaluation of volumetric (3D) models outside a domain"),
    ]
    for args, message in cases:
        res = cli(*args)
        assert_one_line_error(res, message, code=3)


def test_sample_writes_deterministic_domain_data(cli, tmp_path):
    import hashlib

    for name in ("satellite", "industrial"):
        digests = []
        for run in ("a", "b"):
            res = cli("sample", name, "--output", tmp_path / name / run, "--seed", "3")
            assert res.exit_code == 0, res.output
            files = sorted((tmp_path / name / run).rglob("*.*"))
            assert any(f.parent.name == "masks" for f in files) and any(f.parent.name == "images" for f in files)
            digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
        assert digests[0] == digests[1]
    import nibabel as nib
    import numpy as np

    volumes = []
    for run in ("a", "b"):  # NIfTI: compare the decoded volumes (gzip headers carry a time stamp)
        res = cli("sample", "medical", "--output", tmp_path / "medical" / run, "--seed", "3")
        assert res.exit_code == 0 and "wrote 4 labelled sample(s)" in res.output, res.output
        files = sorted((tmp_path / "medical" / run).rglob("*.nii.gz"))
        assert [f.parent.name for f in files] == ["imagesTr"] * 4 + ["labelsTr"] * 4
        volumes.append([(np.asarray(nib.load(f).dataobj), nib.load(f).affine) for f in files])
    for (a, fa), (b, fb) in zip(*volumes):
        assert np.array_equal(a, b) and np.array_equal(fa, fb)


def test_segsuite_warnings_are_one_line_in_the_shell(tmp_path, segsuite_proc):
    import numpy as np

    from segsuite.core.data.images import write_image

    for i in range(2):
        write_image(tmp_path / "d" / "images" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
        write_image(tmp_path / "d" / "masks" / f"{i}.png", np.full((8, 8), 42, np.uint8))  # not a label id of the map
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["a", "b"], "raw_ids": {"1": 0, "2": 1}}))
    res = segsuite_proc("train", "--data", tmp_path / "d", "--classes", tmp_path / "classes.json", "--epochs", "1",
                        "--batch-size", "2", "--model", "segnet", "-O", "widths=[4]", "--device", "cpu",
                        "--output", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    warn = [ln for ln in res.stderr.splitlines() if "label ids [42]" in ln]
    assert warn and all(ln.startswith("segsuite: warning: ") for ln in warn)
    assert "UnknownLabelWarning" not in res.stderr and "warnings.warn" not in res.stderr


def test_run_domain_help_shows_exactly_that_domains_options(cli):
    from segsuite.core.plugins import load_plugins

    domains = load_plugins(entry_points=False).domains
    flags = {name: {o.flag for o in d.pipeline.options} for name, d in domains.items() if d.pipeline is not None}
    assert set(flags) == {"driving", "industrial", "medical", "satellite"}
    every = set().union(*flags.values())
    for name, own in flags.items():
        res = cli("run", name, "--help")
        assert res.exit_code == 0, res.output
        shown = {f for f in every if f"\n  {f} " in res.stdout or f"\n  {f}\n" in res.stdout}
        assert shown == own, name
        for common in ("--input", "--model", "--output", "--report", "--skip-existing"):
            assert common in res.stdout
    res = cli("run", "--help")
    for name in flags:
        assert f"\n  {name} " in res.stdout


def _tiny_checkpoint(path: Path, channels: int = 3) -> Path:
    from segsuite.core.checkpoint import ModelCard, save_checkpoint
    from segsuite.core.models import build_model
    from segsuite.core.plugins import load_plugins

    model = build_model("segnet", channels, 2, registry=load_plugins(entry_points=False), widths=[4])
    return save_checkpoint(path, model, ModelCard(model=model.card(), class_map={"names": ["bg", "thing"]}, domain=None))


def test_generic_run_isolates_bad_images_first_and_last(cli, tmp_path):
    import numpy as np

    from segsuite.core.data.images import write_image

    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a_broken.png").write_bytes(b"not a png")
    for name in ("b", "c"):
        write_image(images / f"{name}.png", np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    (images / "z_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    res = cli("run", "--model", ckpt, "--input", images, "--output", tmp_path / "out")
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("segsuite: error:")]
    assert len(errors) == 3 and "a_broken.png" in errors[0] and "z_broken.jpg" in errors[1]
    assert errors[2].endswith("2 of 4 failed; see " + str(tmp_path / "out" / "summary.json"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["status"] for e in summary["inputs"]] == ["failed", "ok", "ok", "failed"]
    for name in ("b", "c"):
        assert (tmp_path / "out" / f"{name}_labels.png").is_file() and (tmp_path / "out" / f"{name}.json").is_file()
    assert not list((tmp_path / "out").glob("a_broken*")) and not list((tmp_path / "out").glob(".*partial*"))


def test_options_before_the_domain_and_unknown_domains_are_one_line_errors(cli, tmp_path):
    assert_one_line_error(cli("run", "--input", "x.png", "industrial"), "put the options after the domain")
    assert_one_line_error(cli("run", "industrail", "--input", "x.png"), "unknown domain 'industrail'", "industrial")
    res = cli("run")
    assert res.exit_code == 0 and "segsuite run DOMAIN --help" in res.stdout


def test_export_and_labels_import_refuse_to_overwrite_their_inputs(cli, tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors")
    before = ckpt.read_bytes()
    assert_one_line_error(cli("export", "--model", ckpt, "--output", tmp_path / "sub" / ".." / "m.safetensors"),
                          "would overwrite the checkpoint")
    assert ckpt.read_bytes() == before
    masks = tmp_path / "labelled" / "masks"
    masks.mkdir(parents=True)
    (masks / "a.png").write_bytes(b"x")
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["bg", "a"], "colors": [[0, 0, 0], [255, 0, 0]]}))
    res = cli("labels", "import", "--format", "color", "--input", masks, "--images", masks,
              "--classes", tmp_path / "classes.json", "--output", tmp_path / "labelled")
    assert_one_line_error(res, "which this import reads")
    assert_one_line_error(cli("labels", "import", "--format", "labelme", "--input", tmp_path, "--output", tmp_path),
                          "would overwrite the input")


def test_sigterm_during_a_real_batch_leaves_a_summary_and_no_partial_files(tmp_path):
    import shutil
    import signal
    import time

    phantom = sorted((Path(__file__).resolve().parents[1] / "sample_data" / "medical" / "imagesTr").glob("*.nii.gz"))[0]
    for i in range(6):
        shutil.copy(phantom, tmp_path / f"case{i}.nii.gz")
    out = tmp_path / "out"
    code = "import sys; from segsuite.cli.app import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "medical", "--input", str(tmp_path), "--output", str(out),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "case0_seg.json").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    statuses = [e["status"] for e in summary["inputs"]]
    assert summary["interrupted"] == "SIGTERM" and statuses[0] == "ok" and statuses[-1] == "not run"
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    for entry in summary["inputs"]:  # a case's files exist exactly when it finished
        assert Path(entry["outputs"]["labels"]).exists() == (entry["status"] == "ok"), entry


@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_explain_and_evaluate_refuse_another_domains_model(cli, tmp_path, command):
    root = Path(__file__).resolve().parents[1] / "sample_data"
    driving = root / "driving" / "model.safetensors"
    parts = root / "industrial" / "parts"
    if command == "explain":
        args = ["explain", "industrial", "--input", parts / "images", "--class", "car", "--model", driving,
                "--output", tmp_path / "out"]
    else:
        args = ["evaluate", "industrial", "--model", driving, "--data", parts, "--output", tmp_path / "out"]
    assert_one_line_error(cli(*args), "a model for the driving domain", "--allow-domain-mismatch")
    assert not (tmp_path / "out").exists()
