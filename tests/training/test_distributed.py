"""Two data-parallel processes through `accelerate launch` on CPU (gloo) train and stay in sync.

accelerate's `--cpu` flag means a single process; `--multi_gpu` with `model.device=cpu` gives N CPU
processes (accelerate's MULTI_CPU mode, gloo backend).
"""

import importlib.util
import subprocess
import sys

import pytest

from ead.training.logger import read_metrics
from conftest import tiny_overrides


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                    reason="accelerate is not installed (pip install 'ead-rlvr[accelerate]')")
def test_two_process_training_on_cpu(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "ddp"
    overrides = [o for o in tiny_overrides(tiny_model_dir, run_dir, steps=2) if not o.startswith("grading.")]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "ead.cli", "train", *overrides, "grading.inline=true", "model.device=cpu",
               # batch-global token selections gathered across the two processes (ead.training.update)
               "algorithm.pg_tokens=high_entropy", "algorithm.policy_loss=clip_cov", "algorithm.clip_cov_ratio=0.05"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]  # one log line per step: rank 0 only
    # 4 prompts x 4 samples per step across both processes (2 prompts each)
    assert records[1]["rollouts_consumed"] == 16 and records[2]["rollouts_consumed"] == 32
    assert records[2]["sampling/responses"] == 16
    assert records[2]["processes"] == 2
    assert 0.2 <= records[2]["select/high_entropy_frac"] < 0.25  # ceil(0.2 N) of all N tokens of both processes
    # the trainer checks at every checkpoint that both replicas hold identical weights
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"
