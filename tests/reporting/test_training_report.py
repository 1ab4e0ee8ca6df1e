"""The per-run report: config shown, the schedule drawn from the saved config, no chart twice."""

import json
import re

import yaml

from ead.reporting.training import panels, schedule_steps, write_training_report

SCHEDULE = {"name": "ead", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0, "d0": 25.0, "alpha": 5.0,
            "d_max": 40000.0, "unit": 0.4}


def write_run(run_dir, steps=6):
    run_dir.mkdir(parents=True)
    config = {"algorithm": {"name": "grpo"}, "sampling": {"schedule": SCHEDULE, "max_new_tokens": 16},
              "train": {"steps": steps, "lr": 2e-4}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    records = []
    for step in range(steps + 1):
        record = {"step": step, "reward/mean": 0.1 * step, "entropy/mean": 0.5, "response/length_mean": 12.0,
                  "behaviour/temperature_mean": 0.5 + 0.1 * step, "is/truncated_frac": 0.01}
        if step % 3 == 0:
            record.update({"eval/pass@1": 0.2 + 0.05 * step, "eval/mean@4": 0.2 + 0.05 * step,
                           "eval/pass@4": 0.6, "eval/worst@4": 0.0, "eval/maj@4": 0.3})
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_panels_use_the_largest_k_and_drop_pass_at_1_which_equals_mean_at_k(tmp_path):
    records = [json.loads(line) for line in (write_run(tmp_path / "r") / "metrics.jsonl").read_text().splitlines()]
    keys = [key for key, _ in panels(records)]
    assert "eval/pass@1" not in keys and {"eval/mean@4", "eval/pass@4", "eval/worst@4"} <= set(keys)
    assert len(keys) == len(set(keys))
    assert schedule_steps(60) == [0, 20, 40, 60] and schedule_steps(1) == [0, 1]


def test_report_shows_config_schedule_and_behaviour_temperature(tmp_path):
    run_dir = write_run(tmp_path / "r")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    text = write_training_report(run_dir, records).read_text()
    assert (run_dir / "training_curves.png").stat().st_size > 1000
    assert "Resolved config" in text and "max_new_tokens: 16" in text and "tau_max: 1.2" in text
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert any("by response position at steps 0, 2, 4, 6" in c for c in captions)
    assert any("Mean behaviour temperature" in c for c in captions)
    assert len(captions) == len(set(captions)) == 2 + len(panels(
        [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]))
    assert set(re.findall(r"<figure data-axes='(\d+)'>", text)) == {"1"}
    # the headline: mean@4 from the first to the last eval, and the behaviour temperature drift
    assert "mean@4: 0.200 at step 0 → 0.500 at step 6" in text and "temperature 0.50 → 1.10" in text
    assert "`" not in text


def test_levels_and_position_buckets_are_one_panel_each_with_a_line_per_level(tmp_path):
    from ead.reporting.breakdowns import breakdown_label

    run_dir = write_run(tmp_path / "r")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.update({"response/length_mean/difficulty_1": 20.0, "response/length_mean/difficulty_3": 60.0,
                       "behaviour/temperature_pos_000_004": 1.2, "behaviour/temperature_pos_016_032": 0.4})
    text = write_training_report(run_dir, records).read_text()
    assert "By difficulty level and response position" in text
    assert (run_dir / "report" / "by_response_length_mean_difficulty.png").is_file()
    assert (run_dir / "report" / "by_behaviour_temperature_pos.png").is_file()
    assert "training response length (tokens) by difficulty level" in text
    assert "eval correct fraction by difficulty level" not in text  # absent family: no empty panel
    assert breakdown_label("behaviour/temperature_pos_016_032") == "positions 16-31"
    assert breakdown_label("eval/length_mean/difficulty_3") == "difficulty 3"
