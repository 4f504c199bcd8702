"""The trainer and the generic train -> evaluate -> run workflow on generated data."""

import csv
from pathlib import Path
import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from segsuite.core import tasks
from segsuite.core.checkpoint import load_checkpoint, read_card
from segsuite.core.data.synthetic import SHAPES, make_shapes_dataset
from segsuite.core.errors import SegsuiteError
from segsuite.core.trainer import TrainConfig, lr_factor

SMALL = dict(model="segnet", model_options={"widths": [8, 16]}, batch_size=4, lr=5e-3, device="cpu", tensorboard=False)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root / "train", n=12, size=(32, 40), seed=1)
    make_shapes_dataset(root / "val", n=4, size=(32, 40), seed=2, prefix="val")
    return root


def assert_same_weights(a_path, b_path):
    a, b = load_checkpoint(a_path).state_dict, load_checkpoint(b_path).state_dict
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_lr_schedules():
    assert lr_factor(0, 100, 10, "poly") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "poly") == 0.0
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_training_learns_and_writes_checkpoints_and_logs(shapes, tmp_path):
    cfg = TrainConfig(epochs=3, **SMALL)
    result = tasks.train(shapes / "train", SHAPES, tmp_path / "run", cfg, val=shapes / "val", log=lambda m: None)
    assert result.epochs_run == 3 and len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    card = read_card(result.best_checkpoint)
    assert card.model["arch"] == "segnet" and card.class_map["names"] == list(SHAPES.names)
    assert card.normalization["kind"] == "zscore" and len(card.normalization["mean"]) == 3
    assert card.training["epochs"] == 3 and card.training["loss"] == "dicece"
    assert card.metrics["monitor"] == "mean_iou" and card.metrics["best"] == pytest.approx(result.best_value)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and all(r["mean_iou"] for r in rows)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["per_class"]["disc"]["iou"] is not None


def test_resume_continues_exactly(shapes, tmp_path):
    full = tasks.train(shapes / "train", SHAPES, tmp_path / "full", TrainConfig(epochs=4, **SMALL), val=shapes / "val", log=lambda m: None)

    def crash_after_epoch_2(message: str) -> None:
        if message.startswith("epoch 2/4"):  # logged once epoch 2's checkpoint and state are on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tasks.train(shapes / "train", SHAPES, tmp_path / "part", TrainConfig(epochs=4, save_every=0, **SMALL),
                    val=shapes / "val", log=crash_after_epoch_2)
    # a new process would start from scratch: scramble the global RNG to prove it is restored
    torch.manual_seed(1234)
    np.random.seed(99)
    resumed = tasks.train(shapes / "train", SHAPES, tmp_path / "part", TrainConfig(epochs=4, **SMALL), val=shapes / "val",
                          resume=tmp_path / "part", log=lambda m: None)
    assert_same_weights(full.last_checkpoint, resumed.last_checkpoint)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]


def test_resume_point_is_written_every_save_every_seconds_and_at_the_end(shapes, tmp_path, monkeypatch):
    from segsuite.core import trainer

    written: list[int] = []
    real = trainer.save_training_state
    monkeypatch.setattr(trainer, "save_training_state", lambda path, state: (written.append(state["epoch"]), real(path, state))[1])
    tasks.train(shapes / "train", SHAPES, tmp_path / "a", TrainConfig(epochs=3, **SMALL), log=lambda m: None)
    assert written == [3]  # default 60 s: these epochs take far less, so only the final one writes
    written.clear()
    tasks.train(shapes / "train", SHAPES, tmp_path / "b", TrainConfig(epochs=3, save_every=0, **SMALL), log=lambda m: None)
    assert written == [1, 2, 3]


def test_resume_from_an_older_point_runs_the_lost_epochs_again(shapes, tmp_path, monkeypatch):
    """Killed after epoch 3 with the resume point at epoch 2 (epoch 3's was not due): the resumed run
    redoes epoch 3, ends with the uninterrupted run's weights, and log.csv lists every epoch once."""
    from segsuite.core import trainer

    full = tasks.train(shapes / "train", SHAPES, tmp_path / "full", TrainConfig(epochs=4, **SMALL), val=shapes / "val",
                       log=lambda m: None)
    real_ckpt, real_state = trainer.save_checkpoint, trainer.save_training_state
    monkeypatch.setattr(trainer, "save_checkpoint", lambda path, model, card: None if (
        Path(path).name == "last.safetensors" and card.metrics.get("epoch") == 3) else real_ckpt(path, model, card))
    monkeypatch.setattr(trainer, "save_training_state", lambda path, state: None if state["epoch"] == 3 else real_state(path, state))

    def crash_after_epoch_3(message: str) -> None:
        if message.startswith("epoch 3/4"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tasks.train(shapes / "train", SHAPES, tmp_path / "part", TrainConfig(epochs=4, save_every=0, **SMALL),
                    val=shapes / "val", log=crash_after_epoch_3)
    with (tmp_path / "part" / "log.csv").open() as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]
    monkeypatch.setattr(trainer, "save_checkpoint", real_ckpt)
    monkeypatch.setattr(trainer, "save_training_state", real_state)
    resumed = tasks.train(shapes / "train", SHAPES, tmp_path / "part", TrainConfig(epochs=4, **SMALL), val=shapes / "val",
                          resume=tmp_path / "part", log=lambda m: None)
    assert_same_weights(full.last_checkpoint, resumed.last_checkpoint)
    with (tmp_path / "part" / "log.csv").open() as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3", "4"]


def test_clip_gradients_matches_torch():
    from segsuite.core.trainer import clip_gradients

    for scale in (1e-3, 10.0):  # below the limit (no scaling pass) and above it
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(5, 7)), torch.nn.Parameter(torch.randn(11))]
        twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p, q in zip(params, twins):
            p.grad = torch.randn_like(p) * scale
            q.grad = p.grad.clone()
        ours = clip_gradients(params, 1.0)
        ref = torch.nn.utils.clip_grad_norm_(twins, 1.0)
        assert float(ours) == pytest.approx(float(ref), rel=1e-6)
        for p, q in zip(params, twins):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)
        if scale == 10.0:
            assert float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))) == pytest.approx(1.0, rel=1e-5)


def test_resume_refuses_a_different_setup(shapes, tmp_path):
    tasks.train(shapes / "train", SHAPES, tmp_path / "r", TrainConfig(epochs=1, **SMALL), log=lambda m: None)
    with pytest.raises(SegsuiteError, match="cannot resume; batch_size was 4, now 2"):
        tasks.train(shapes / "train", SHAPES, tmp_path / "r", TrainConfig(epochs=2, **{**SMALL, "batch_size": 2}),
                    resume=tmp_path / "r", log=lambda m: None)


def test_early_stopping_and_per_class_monitor(shapes, tmp_path):
    cfg = TrainConfig(epochs=6, early_stopping=1, monitor="iou/disc", **{**SMALL, "lr": 0.0})
    result = tasks.train(shapes / "train", SHAPES, tmp_path / "es", cfg, val=shapes / "val", log=lambda m: None)
    assert result.epochs_run == 2  # lr 0: nothing improves after the first validation
    with pytest.raises(Exception, match="unknown class 'cat'"):
        tasks.train(shapes / "train", SHAPES, tmp_path / "bad", TrainConfig(epochs=1, monitor="iou/cat", **SMALL),
                    val=shapes / "val", log=lambda m: None)


def test_config_file_validation(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(SegsuiteError, match="c.yaml: unknown setting\\(s\\) learning_rate"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "ok.yaml").write_text("epochs: 3\nlr: 0.1\npatch_size: [32, 32]\n")
    cfg = TrainConfig.from_yaml(tmp_path / "ok.yaml", epochs=5)
    assert cfg.epochs == 5 and cfg.lr == 0.1 and cfg.patch_size == (32, 32)


@pytest.mark.slow
def test_cli_train_evaluate_run_split(shapes, tmp_path, cli):
    res = cli("split", shapes / "train", "--output", tmp_path / "splits", "--ratios", "0.75,0.25,0", "--seed", "1")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "splits" / "train.csv").exists() and not (tmp_path / "splits" / "test.csv").exists()
    res = cli("train", "--data", tmp_path / "splits" / "train.csv", "--val", tmp_path / "splits" / "val.csv",
              "--model", "segnet", "-O", "widths=[8,16]", "--classes", "background,disc,box", "--epochs", "2",
              "--batch-size", "3", "--device", "cpu", "--output", tmp_path / "run", "--patch-size", "32,32")
    assert res.exit_code == 0, res.output
    assert "best checkpoint:" in res.stdout
    best = tmp_path / "run" / "best.safetensors"
    assert read_card(best).patch_size == [32, 32]

    res = cli("evaluate", "--model", best, "--data", shapes / "val", "--output", tmp_path / "eval", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "mean IoU" in res.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert len(metrics["per_image"]) == 4 and len(metrics["confusion_matrix"]) == 3
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 0

    res = cli("run", "--model", best, "--input", shapes / "val" / "images", "--output", tmp_path / "pred", "--device", "cpu")
    assert res.exit_code == 0, res.output
    from segsuite.core.data.images import read_image_array

    labels = read_image_array(tmp_path / "pred" / "val_000_labels.png")
    assert labels.shape == (32, 40) and labels.max() <= 2
    assert read_image_array(tmp_path / "pred" / "val_000_overlay.png").shape == (32, 40, 3)
    summary = json.loads((tmp_path / "pred" / "val_000.json").read_text())
    assert sum(summary["pixels"].values()) == 32 * 40

    res = cli("split", shapes / "train", "--output", tmp_path / "folds", "--folds", "3")
    assert res.exit_code == 0 and (tmp_path / "folds" / "fold_3" / "val.csv").exists()


def test_cli_workflow_errors(shapes, tmp_path, cli):
    assert_one_line_error(cli("train", "--data", shapes / "train"), "--classes is required without a domain")
    assert_one_line_error(cli("train", "--data", shapes / "train", "--classes", "a,b,c", "--model", "unett"),
                          "unknown model 'unett' (did you mean unet")
    assert_one_line_error(cli("train", "--data", shapes / "train", "--classes", "a,a"), "duplicate class name 'a'")
    assert_one_line_error(cli("train", "--data", shapes / "train", "--classes", "a,b", "-O", "encoder"),
                          "model option 'encoder' must look like key=value")
    (tmp_path / "w.pt").write_bytes(b"\x80\x04junk")
    assert_one_line_error(cli("evaluate", "--model", tmp_path / "w.pt", "--data", shapes / "val"),
                          "w.pt: a pickled PyTorch file, not a segsuite checkpoint")
    (tmp_path / "x.safetensors").write_bytes(b"garbage!")
    assert_one_line_error(cli("run", "--model", tmp_path / "x.safetensors", "--input", shapes / "val" / "images"),
                          "x.safetensors: not a segsuite checkpoint")
    (tmp_path / "bad.png").write_text("not an image")
    assert_one_line_error(cli("split", tmp_path / "nothing_here"), "nothing_here: dataset not found")
    assert_one_line_error(cli("split", shapes / "train", "--group-by", "(unclosed"), "is not a valid regular expression")


@pytest.mark.slow
def test_demo_runs_a_domain_and_the_training_workflow(tmp_path, cli):
    res = cli("demo", "--output", tmp_path / "demo", "--epochs", "1", "--domains", "industrial")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [(s["domain"], s["status"]) for s in summary["sections"]] == [("industrial", "ok"), ("training", "ok")]
    industrial, training = (s["facts"] for s in summary["sections"])
    assert industrial["parts"] == "6" and int(industrial["NG"]) >= 4  # the shipped model on the shipped parts
    assert training["images"] == "44/10/10 train/val/test" and training["epochs"] == "1"
    out = tmp_path / "demo"
    for path in ("training/evaluation/metrics.json", "training/evaluation/confusion.png", "training/run/log.csv",
                 "training/training_curves.png", "industrial/evaluation/metrics.json", "industrial/run/summary.csv"):
        assert (out / path).is_file(), path
    assert len(list((out / "training" / "predictions").glob("*_overlay.png"))) == 10
    page = (out / "index.html").read_text()
    assert page.count("<section") == 2 and "Training log" in page and "Verdicts" in page
    assert "report:" in res.stdout and "industrial" in res.stdout and "training" in res.stdout


def test_batch_norm_on_a_one_value_batch_is_a_one_line_error(shapes, tmp_path):
    """DDRNet's context branch pools globally: with batch 1 its batch norm sees one value per channel."""
    cfg = TrainConfig(epochs=1, **{**SMALL, "model": "ddrnet", "model_options": {"planes": 4}, "batch_size": 1})
    with pytest.raises(SegsuiteError, match=r"batch norm cannot train on a batch of 1 .*--batch-size 2 or more"):
        tasks.train(shapes / "train", SHAPES, tmp_path / "run", cfg, log=lambda m: None)
