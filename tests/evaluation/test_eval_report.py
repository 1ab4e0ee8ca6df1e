"""``ead eval``'s labels, step note and bands (worked out by hand)."""

import pytest

from ead.evaluation.command import schedule_step_note
from ead.evaluation.report import _schedule_summary, brief_label, decay_length_tokens, write_plots
from ead.training.config import DEMO_EAD_SCHEDULE


def test_brief_labels_name_the_schedule_and_its_decay_length_at_the_step():
    # D_s = unit * min(d0 + alpha * s, d_max) = 0.4 * (25 + 5 s): 10 tokens at step 0, 130 at step 60
    assert brief_label(DEMO_EAD_SCHEDULE) == "EAD(tau 1.2->0.1, D=10 tok)"
    assert brief_label(DEMO_EAD_SCHEDULE, 60) == "EAD(tau 1.2->0.1, D=130 tok at step 60)"
    assert brief_label({"name": "ead"}) == "EAD(tau 1.2->0.1, D=500 tok, c=10)"  # paper defaults: 20 x 25 tokens
    assert brief_label({"name": "fixed", "tau": 0.6}) == "fixed 0.6"
    assert decay_length_tokens({"name": "fixed", "tau": 1.0}, 60) is None


def test_the_step_note_says_where_ead_was_evaluated_and_how_to_change_it():
    summary = {"config": {"step": 60}, "schedules": {"fixed(tau=1)": {"spec": {"name": "fixed", "tau": 1.0}},
                                                      "ead(...)": {"spec": dict(DEMO_EAD_SCHEDULE)}}}
    note = schedule_step_note(summary)
    assert "training step 60" in note and "D = 130 tokens" in note and "--schedule-step" in note
    summary["schedules"].pop("ead(...)")
    assert schedule_step_note(summary) is None


def _record(correct, answers):
    n = len(correct)
    return {"metrics": {f"{m}@1": float(sum(correct)) / n for m in ("pass", "maj", "worst", "mean")},
            "correct": correct, "answer_keys": answers, "grade_errors": [None] * n, "lengths": [5] * n,
            "finished": [True] * n, "behaviour_logprob": {"per_token": [-1.0] * n}, "mean_temperature": [1.0] * n}


def test_curves_carry_bootstrap_bands_inside_zero_one(tmp_path):
    records = [_record([True, True], ["1", "1"]), _record([False, False], ["2", "3"]),
               _record([True, False], ["1", "2"]), _record([False, True], ["2", "1"])]
    entry = _schedule_summary(records, [1], 2, resamples=200, confidence=0.95, seed=0)
    # pass@1 per problem: 1, 0, 0.5, 0.5 -> mean 0.5; pass@2: 1, 0, 1, 1 -> 0.75
    assert entry["curve"]["pass"] == pytest.approx([0.5, 0.75])
    for (low, high), mean in zip(entry["curve"]["pass_ci"], entry["curve"]["pass"]):
        assert 0.0 <= low <= mean <= high <= 1.0 and high > low
    summary = {"config": {"step": 0}, "samples": 2, "k": [1],
               "schedules": {"fixed(tau=1)": {"spec": {"name": "fixed", "tau": 1.0}, **entry},
                             "ead": {"spec": dict(DEMO_EAD_SCHEDULE), **entry}}}
    written = write_plots(summary, tmp_path)
    assert [p.name for p in written] == ["pass_at_k.png", "comparison.png"]


def test_schedule_step_flag_reaches_the_config(capsys):
    import yaml

    from ead import cli

    assert cli.main(["eval", "--schedule-step", "5", "--compare", "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["step"] == 5 and {"name": "fixed", "tau": 0.6} in config["schedules"]
