"""``ead train`` invoked in-process through the real CLI entry point (argument parsing to run directory)."""

import yaml

from conftest import tiny_overrides
from ead.cli import main
from ead.training.logger import read_metrics


def test_ead_train_through_the_cli_on_a_tiny_budget(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, run_dir, steps=2) + ["eval.every=1", "sampling.schedule.tau_max=1.4"]
    assert main(["train", "--algorithm", "dr_grpo", *overrides]) == 0
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [0, 1, 2]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["algorithm"]["name"] == "dr_grpo" and saved["algorithm"]["loss_aggregation"] == "seq_mean_token_sum"
    assert saved["sampling"]["schedule"]["tau_max"] == 1.4 and saved["train"]["steps"] == 2
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000002"


def test_ead_train_config_error_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["train", f"output.dir={tmp_path / 'run'}", "sampling.schedule.tau_mn=0.1"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "sampling.schedule" in err and "tau_mn" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()



def test_output_piped_into_a_reader_that_stops_early_is_not_a_traceback():
    """`ead sweep sweep_long --dry-run | head -0`: a closed pipe ends the command quietly (exit 141, no traceback)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "ead.cli", "sweep", "sweep_long", "--dry-run"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the child has imported anything, so its first write meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
