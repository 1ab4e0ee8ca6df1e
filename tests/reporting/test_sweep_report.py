"""``ead report`` on a hand-made sweep: statistics worked out by hand, files written, HTML self-contained."""

import json
import math
import re

import pytest
import yaml

from ead.experiments.summary import build_report, load_sweep, mean_ci, moving_average, summarize


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


def write_sweep(root, finals=None, levels=False):
    finals = FINAL if finals is None else finals
    labels = dict.fromkeys(group.removesuffix("__grpo") for group in finals)
    config = {"name": "toy", "description": "a hand-made sweep", "out_dir": str(root), "base": ["train.steps=4"],
              "axes": {"sampler": {label: [] for label in labels}}, "algorithms": ["grpo"], "seeds": [0, 1, 2],
              "base_eval": {"enabled": True}, "report": {"targets": {"eval/mean@16": [0.45, 0.65]}, "smooth": 1,
                                                          "baseline": "fixed-1.0"}}
    root.mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for group, per_seed in finals.items():
        for seed, final in enumerate(per_seed):
            if final is None:  # a cell this sweep did not run (ead sweep --only)
                continue
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
                    if levels:  # EAD's eval responses 10 tokens longer on level 3 only, every seed
                        record.update({"eval/length_mean/difficulty_1": 10.0 + seed,
                                       "eval/length_mean/difficulty_3": 20.0 + seed + 10.0 * group.startswith("ead"),
                                       "eval/correct_frac/difficulty_3": 0.1})
                if levels and step > 0:
                    record["behaviour/temperature_pos_016_032"] = 0.5 if group.startswith("ead") else 1.0
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
    from ead.reporting.sweep import markdown_tables

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
    # minimum detectable effect, power 0.8 at 5% two-sided: (t_{0.975,2} + t_{0.80,2}) sd / sqrt(3)
    # = (4.303 + 1.061) * 0.1 / 1.732 = 0.3097
    assert row["eval/mean@16"]["mde"] == pytest.approx(0.3097, abs=1e-3)


def test_t_tables_match_scipy():
    from scipy import stats

    from ead.experiments.summary import minimum_detectable_effect, t_quantile_80, t_quantile_975

    for df in range(1, 31):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
        assert t_quantile_80(df) == pytest.approx(stats.t.ppf(0.80, df), abs=6e-4)
    # five seeds: sd of (0.01, -0.01, 0.02, 0, 0.03) = sqrt(0.001 / 4) = 0.015811; (2.776 + 0.941) / sqrt(5) = 1.6623
    assert minimum_detectable_effect([0.01, -0.01, 0.02, 0.0, 0.03]) == pytest.approx(1.6623 * 0.015811, abs=1e-4)
    assert math.isnan(minimum_detectable_effect([0.02]))


@pytest.fixture
def two_curves(monkeypatch):
    """Two of the eight curve metrics: every figure kind is drawn, in a third of the time."""
    import ead.reporting.sweep as report

    monkeypatch.setattr(report, "CURVES", report.CURVES[2:4])


def test_report_writes_a_self_contained_page_and_pngs(tmp_path, two_curves):
    sweep = write_sweep(tmp_path / "toy")
    page = build_report([sweep], tmp_path / "out", command="ead sweep toy")
    text = page.read_text()
    figures = re.findall(r"<figure data-axes='(\d+)'>", text)
    # 4 final-metric figures, 2 curves x (vs step, vs rollouts), 2 schedule steps, base pass@N and maj@N
    assert len(figures) == 4 + 4 + 2 + 2 and set(figures) == {"1"}
    assert text.count("src='data:image/png;base64,") == len(figures) and "http" not in text
    assert len(list((tmp_path / "out" / "figures").glob("*.png"))) == len(figures)
    assert text.index("class='finding'") < text.index("<figure")  # the finding comes first
    assert "`" not in text  # Markdown code spans become <code>, never literal backticks
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert len(set(captions)) == len(captions)  # vs-step and vs-rollouts figures are titled apart
    assert "+0.100 ± 0.248 (GRPO; MDE 0.310)" in text  # the key number: paired Mean@16 difference, worked out below
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| ead__grpo | 3/3 (partial) | 4 | " in md and "0.600 ± 0.248" in md
    assert "| mean@16 MDE |" in md and md.split("| mean@16 MDE |")[1].split("\n")[2].endswith("| 0.310 |")
    assert "ead sweep toy" in md
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["name"] == "toy"


def test_bands_are_clipped_to_the_metric_range(tmp_path):
    from ead.experiments.summary import aggregate

    sweep = load_sweep(write_sweep(tmp_path / "toy"))
    agg = aggregate(sweep.groups["fixed-1.0__grpo"], "eval/pass@16")
    # step 4: pass@16 = min(1, 2 * final) = 0.8, 1.0, 1.0 -> mean 0.9333, sd 0.11547, half 4.303 * 0.11547 / sqrt(3)
    half = 4.303 * 0.11547 / math.sqrt(3)
    assert agg["mean"][-1] == pytest.approx(0.93333, abs=1e-4)
    assert agg["mean"][-1] + half > 1.2  # unclipped, the band would reach past 1.2
    assert agg["high"][-1] == 1.0 and agg["low"][-1] == pytest.approx(0.93333 - half, abs=1e-3)


def test_the_page_is_a_function_of_the_summary_alone(tmp_path, monkeypatch):
    import ead.reporting.sweep as report

    monkeypatch.setattr(report, "CURVES", report.CURVES[2:3])
    from ead.experiments.summary import report_from_summary

    build_report([write_sweep(tmp_path / "toy")], tmp_path / "a", finding="EAD `ead` wins **here**.")
    report_from_summary(tmp_path / "a" / "summary.json", tmp_path / "b", finding="EAD `ead` wins **here**.")
    strip = lambda path: re.sub(r"base64,[^']*", "", path.read_text())  # noqa: E731
    assert strip(tmp_path / "a" / "report.html") == strip(tmp_path / "b" / "report.html")
    assert "<p>EAD <code>ead</code> wins <strong>here</strong>.</p>" in strip(tmp_path / "b" / "report.html")


def test_a_summary_without_curves_or_samplers_still_renders(tmp_path):
    from ead.experiments.summary import report_from_summary

    summary = summarize(load_sweep(write_sweep(tmp_path / "toy")))
    for group in summary["groups"]:
        del group["curves"], group["sampler"]
    (tmp_path / "old.json").write_text(json.dumps([summary]))
    text = report_from_summary(tmp_path / "old.json", tmp_path / "out").read_text()
    assert "Per-step curves are not in this summary" in text
    assert len(re.findall(r"<figure data-axes='1'>", text)) == 4 + 2  # final metrics, base pass@N / maj@N


def test_merge_summary_completes_an_only_rerun_and_pairs_across_both(tmp_path):
    from ead.experiments.summary import merge_summary

    committed = summarize(load_sweep(write_sweep(tmp_path / "old")))
    # The rerun repeats the baseline (same numbers) and adds a group; "ead" is not rerun.
    fresh_finals = {"fixed-1.0__grpo": [0.40, 0.50, 0.60], "ead__grpo": [None] * 3, "ead+x__grpo": [0.60, 0.50, 0.90]}
    fresh = summarize(load_sweep(write_sweep(tmp_path / "new", fresh_finals)))
    committed = json.loads(json.dumps(committed))  # as read back from summary.json: seed keys become strings
    merged = merge_summary(fresh, committed)
    assert [g["group"] for g in merged["groups"]] == ["fixed-1.0__grpo", "ead__grpo", "ead+x__grpo"]
    assert merged["groups"][1] == committed["groups"][1]  # taken over unchanged
    paired = {row["group"]: row["eval/mean@16"] for row in merged["paired"]}
    # ead - fixed: 0.1, 0.2, 0.0 -> 0.1; ead+x - fixed: 0.2, 0.0, 0.3 -> 0.16667 (sd 0.15275, t_2 4.303 / sqrt 3)
    assert paired["ead__grpo"]["mean"] == pytest.approx(0.1)
    assert paired["ead+x__grpo"]["mean"] == pytest.approx(0.5 / 3)
    assert paired["ead+x__grpo"]["ci95"] == pytest.approx(4.303 * 0.152753 / 3 ** 0.5, abs=1e-4)


def test_merge_summary_refuses_runs_that_do_not_reproduce(tmp_path):
    from ead.experiments.summary import merge_summary

    committed = summarize(load_sweep(write_sweep(tmp_path / "old")))
    fresh = summarize(load_sweep(write_sweep(tmp_path / "new", {"fixed-1.0__grpo": [0.40, 0.55, 0.60],
                                                                "ead__grpo": [None] * 3})))
    with pytest.raises(ValueError, match="fixed-1.0__grpo seed 1"):
        merge_summary(fresh, committed)
    with pytest.raises(ValueError, match="cannot merge sweep"):
        merge_summary(fresh, {**committed, "name": "other"})


def test_length_per_difficulty_is_tabled_paired_and_drawn(tmp_path):
    page = build_report([write_sweep(tmp_path / "toy", levels=True)], tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    row = next(r for r in summary["paired"] if r["group"] == "ead__grpo")
    assert row["eval/length_mean/difficulty_3"]["mean"] == pytest.approx(10.0)
    assert row["eval/length_mean/difficulty_1"]["mean"] == pytest.approx(0.0)
    assert row["eval/length_mean/difficulty_3"]["ci95"] == pytest.approx(0.0)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| ead__grpo | 0.0 ± 0.0 | 10.0 ± 0.0 |" in text  # the paired table, levels 1 and 3
    # hardest minus easiest per run: fixed (20 + s) - (10 + s) = 10, ead (30 + s) - (10 + s) = 20 for every seed;
    # paired: 20 - 10 = 10, the difference in differences
    groups = {g["group"]: g for g in summary["groups"]}
    assert groups["fixed-1.0__grpo"]["final"]["eval/length_mean/difficulty_3-1"]["mean"] == pytest.approx(10.0)
    assert groups["ead__grpo"]["final"]["eval/length_mean/difficulty_3-1"]["per_seed"] == {"0": 20.0, "1": 20.0, "2": 20.0}
    assert row["eval/length_mean/difficulty_3-1"]["mean"] == pytest.approx(10.0)
    assert "| difficulty 1 | difficulty 3 | difficulty 3 minus 1 |" in text
    html = page.read_text()
    assert "Per difficulty level and per response position" in html
    assert "behaviour temperature, positions 16-31" in html and "eval correct fraction, difficulty 3" in html
    ead = next(g for g in summary["groups"] if g["group"] == "ead__grpo")
    assert ead["curves"]["behaviour/temperature_pos_016_032"]["mean"][-1] == pytest.approx(0.5)


def test_a_sweep_without_levels_has_no_difficulty_section(tmp_path):
    page = build_report([write_sweep(tmp_path / "toy")], tmp_path / "out")
    assert "Per difficulty level" not in page.read_text()
    assert "difficulty" not in (tmp_path / "out" / "summary.md").read_text()
