"""``ead report`` on a hand-made sweep: statistics worked out by hand, files written, HTML self-contained."""

import json
import math

import pytest
import yaml

from ead.experiments.report import build_report, load_sweep, mean_ci, moving_average, summarize


def test_mean_ci_is_the_student_t_interval():
    mean, half, n = mean_ci([0.4, 0.5, 0.6])
    # sd = 0.1, t_{0.975,2} = 4.303 -> 4.303 * 0.1 / sqrt(3) = 0.24843
    assert (mean, n) == (pytest.approx(0.5), 3) and half == pytest.approx(0.24843, abs=1e-4)
    assert mean_ci([0.3])[0] == 0.3 and math.isnan(mean_ci([0.3])[1])
    assert mean_ci([])[2] == 0


def test_moving_average_is_trailing():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


# Final eval/mean@16 per (group, seed); every run evaluates at steps 0, 2, 4 and logs training metrics each step.
FINAL = {"fixed-1.0__grpo": [0.40, 0.50, 0.60], "ead__grpo": [0.50, 0.70, 0.60]}


def write_sweep(root):
    config = {"name": "toy", "description": "a hand-made sweep", "out_dir": str(root), "base": ["train.steps=4"],
              "axes": {"sampler": {"fixed-1.0": [], "ead": []}}, "algorithms": ["grpo"], "seeds": [0, 1, 2],
              "base_eval": {"enabled": True}, "report": {"targets": {"eval/mean@16": [0.45, 0.65]}, "smooth": 1,
                                                          "baseline": "fixed-1.0"}}
    root.mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for group, finals in FINAL.items():
        for seed, final in enumerate(finals):
            cell = root / "cells" / f"{group}__s{seed}"
            cell.mkdir(parents=True)
            records = []
            for step in range(5):
                record = {"step": step, "rollouts_consumed": 100 * step, "reward/mean": 0.1 * step,
                          "entropy/mean": 1.0, "response/length_mean": 12.0, "is/truncated_frac": 0.0}
                if step > 0:  # training steps: 8 responses, a correct fraction growing with step and seed
                    record.update({"sampling/responses": 8, "reward/correct_frac": 0.05 * step * (seed + 1)})
                if step % 2 == 0:  # evals ramp linearly from 0.2 to the final value
                    value = 0.2 + (final - 0.2) * step / 4
                    record.update({"eval/mean@16": value, "eval/pass@16": min(1.0, 2 * value),
                                   "eval/worst@16": value / 4, "eval/maj@16": value, "eval/entropy": 1.0,
                                   "eval/response_length": 12.0})
                records.append(record)
            (cell / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            schedule = {"name": "fixed", "tau": 1.0} if group.startswith("fixed") else {"name": "ead", "unit": 0.4}
            (cell / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": 4},
                                                              "sampling": {"schedule": schedule, "max_new_tokens": 8}}))
            if not (group == "ead__grpo" and seed == 2):  # one cell left unfinished: reported as partial
                (cell / "DONE").write_text("{}\n")
    (root / "base_inference").mkdir()
    (root / "base_inference" / "base_inference.json").write_text(json.dumps({
        "task": "countdown", "num_problems": 4, "samples": 4, "k": [1, 2, 4], "max_new_tokens": 8,
        "schedules": {label: {"schedule": {"name": "fixed", "tau": 1.0},
                              "pass": {"mean": [0.2, 0.3, 0.4], "low": [0.1, 0.2, 0.3], "high": [0.3, 0.4, 0.5]},
                              "maj": {"mean": [0.2, 0.25, 0.3], "low": [0.1, 0.1, 0.2], "high": [0.3, 0.4, 0.4]},
                              "response_length": 10.0, "seconds": 1.0} for label in ("fixed-1.0", "ead")}}))
    return root


def test_correct_responses_per_run_by_hand(tmp_path):
    summary = summarize(load_sweep(write_sweep(tmp_path / "toy")))
    stat = {g["group"]: g for g in summary["groups"]}["fixed-1.0__grpo"]["correct_responses"]
    # seed s: sum over steps 1..4 of 8 * 0.05 * step * (s + 1) = 4 * (s + 1) -> 4, 8, 12; mean 8, sd 4
    assert stat["per_seed"] == {0: pytest.approx(4.0), 1: pytest.approx(8.0), 2: pytest.approx(12.0)}
    assert stat["mean"] == pytest.approx(8.0) and stat["ci95"] == pytest.approx(4.303 * 4 / 3 ** 0.5, abs=1e-2)
    from ead.experiments.report import markdown_tables

    assert "| fixed-1.0__grpo | 8.0 ± 9.9 | 4 / 8 / 12 |" in markdown_tables(summary)


def test_summary_numbers_by_hand(tmp_path):
    summary = summarize(load_sweep(write_sweep(tmp_path / "toy")))
    groups = {g["group"]: g for g in summary["groups"]}
    ead = groups["ead__grpo"]
    assert ead["seeds"] == 3 and ead["complete"] == 2 and ead["last_step"] == 4
    assert ead["final"]["eval/mean@16"]["mean"] == pytest.approx(0.6)
    assert ead["final"]["eval/mean@16"]["ci95"] == pytest.approx(0.24843, abs=1e-4)
    # average over evals at steps 2 and 4: seed 0 -> (0.35 + 0.5) / 2 = 0.425; seed 1 -> (0.45 + 0.7) / 2 = 0.575;
    # seed 2 -> (0.4 + 0.6) / 2 = 0.5; mean 0.5
    assert ead["average"]["eval/mean@16"]["mean"] == pytest.approx(0.5)
    # >= 0.45 first at: seed 0 step 4 (0.35 at step 2), seed 1 step 2 (0.45), seed 2 step 4 (0.40 at step 2)
    assert ead["targets"]["eval/mean@16>=0.45"] == {"reached": 3, "of": 3, "median_step": 4.0, "median_rollouts": 400.0}
    assert groups["fixed-1.0__grpo"]["targets"]["eval/mean@16>=0.65"]["reached"] == 0
    # paired by seed: (0.5-0.4, 0.7-0.5, 0.6-0.6) = (0.1, 0.2, 0.0): mean 0.1, sd 0.1
    (row,) = summary["paired"]
    assert row["group"] == "ead__grpo" and row["baseline"] == "fixed-1.0__grpo"
    assert row["eval/mean@16"]["mean"] == pytest.approx(0.1) and row["eval/mean@16"]["ci95"] == pytest.approx(0.24843, abs=1e-4)


def test_report_writes_a_self_contained_page_and_pngs(tmp_path):
    sweep = write_sweep(tmp_path / "toy")
    page = build_report([sweep], tmp_path / "out", command="ead sweep toy")
    text = page.read_text()
    assert text.count("src='data:image/png;base64,") == 4 and "http" not in text
    for name in ("toy_vs_step.png", "toy_vs_rollouts.png", "toy_schedules.png", "toy_base_inference.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5000
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| ead__grpo | 3/3 (partial) | 4 | " in md and "0.600 ± 0.248" in md
    assert "ead sweep toy" in md
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["name"] == "toy"
