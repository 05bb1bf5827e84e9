"""Distributed training: Lightning DDP with the gloo backend on CPU, launched by ``torchrun``.

Two processes (global batch split 8 + 8) must follow the loss trajectory of
one process (batch 16) on the same data and seed: DDP averages the two
half-batch gradients into the full-batch gradient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ddp_fp_stage.py")
REPO = Path(__file__).resolve().parents[2]


def _train(out: Path, nproc: int) -> tuple[dict, pd.Series]:
    """Run the FP stage on ``nproc`` processes; return rank 0's record and the validation-loss trajectory by step."""
    args = [str(SCRIPT), "--out", str(out), "--devices", str(nproc), "--batch-size", str(16 // nproc)]
    if nproc > 1:
        torchrun = shutil.which("torchrun")
        launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
        cmd = [*launcher, "--standalone", "--nproc-per-node", str(nproc), *args]
    else:
        cmd = [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = pd.read_csv(out / "logs" / "fp" / "metrics.csv").dropna(subset=["val_loss"])
    return json.loads((out / "run.json").read_text()), metrics.set_index("step")["val_loss"]


def test_two_gloo_processes_follow_the_single_process_loss_trajectory(tmp_path):
    single, single_loss = _train(tmp_path / "one", 1)
    ddp, ddp_loss = _train(tmp_path / "two", 2)
    assert single["world_size"] == 1
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert list(ddp_loss.index) == list(single_loss.index) and len(single_loss) == 12
    assert single_loss.iloc[-1] < 0.5 * single_loss.iloc[0]  # it really trained
    pd.testing.assert_series_equal(ddp_loss, single_loss, rtol=1e-4, atol=1e-6)
    w1 = torch.load(single["weights"], weights_only=True)
    w2 = torch.load(ddp["weights"], weights_only=True)
    for name, value in w1.items():
        torch.testing.assert_close(w2[name], value, rtol=1e-4, atol=1e-5, msg=name)
