"""DistributedDataParallel: two CPU processes (gloo) reach the weights of one process."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from segsuite.core.checkpoint import load_checkpoint
from segsuite.core.data.synthetic import make_shapes_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # no ignore ring: every sample has the same number of labelled pixels, so the mean of the
    # per-process losses equals the loss of the global batch
    make_shapes_dataset(tmp_path / "data", n=8, size=(32, 32), seed=3, ignore_ring=False)
    # MONAI's U-Net uses instance norm (per sample); BatchNorm statistics would differ per
    # process on CPU, where SyncBatchNorm is not available.
    # SGD, not Adam: conv biases in front of instance norm get (near) zero gradients, and
    # Adam would turn their float rounding noise into full-size, process-dependent steps
    (tmp_path / "cfg.yaml").write_text("optimizer: sgd\ngrad_clip: null\ntensorboard: false\n")
    args = ["train", "--config", str(tmp_path / "cfg.yaml"), "--data", str(tmp_path / "data"), "--model", "unet3d", "-O", "channels=[8,16,32]",
            "--classes", "background,disc,box", "--epochs", "2", "--batch-size", "4", "--lr", "0.05",
            "--no-augment", "--device", "cpu", "--seed", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "segsuite.cli", *args, "--output", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                          "-m", "segsuite.cli", *args, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "last.safetensors").state_dict
    b = load_checkpoint(tmp_path / "two" / "last.safetensors").state_dict
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5, msg=k)
    # and both runs really trained: the weights moved away from the shared initialisation
    torch.manual_seed(5)
    from segsuite.core.models import build_model

    init = build_model("unet3d", 3, 3, 2, channels=[8, 16, 32]).state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not torch.allclose(a[k], init[k], atol=1e-4)]
    assert len(moved) > len(a) // 3
