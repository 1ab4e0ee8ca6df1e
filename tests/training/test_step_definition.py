"""One definition of EAD's global step: training steps (rollout batches) completed.

``ead train`` does several optimiser updates per step here (2 mini-batches x 2 PPO epochs); the
schedule must still see 0, 1, 2 for the 1st, 2nd, 3rd batch of rollouts, as verl's hook and the TRL
integration do (tests/integrations/test_trl.py::test_trl_schedule_step_counts_rollout_batches_not_optimiser_steps).
"""

from ead.training.config import load_train_config


def test_ead_train_passes_completed_training_steps(tiny_model_dir, tmp_path, monkeypatch):
    import ead.training.trainer as trainer_module

    seen, real = [], trainer_module.collect_rollouts

    def recording(engine, pad_token_id, task, grader, schedule, step, *args, **kwargs):
        seen.append(step)
        return real(engine, pad_token_id, task, grader, schedule, step, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "collect_rollouts", recording)
    overrides = [f"model.path={tiny_model_dir}", f"output.dir={tmp_path / 'run'}", "train.steps=3",
                 "train.prompts_per_step=2", "train.samples_per_prompt=4", "train.mini_batch_size=4",
                 "train.micro_batch_size=4", "train.ppo_epochs=2", "sampling.max_new_tokens=8", "eval.every=0",
                 "output.save_every=0", "output.progress=false", "grading.inline=true", "model.num_threads=1"]
    run_dir = trainer_module.train(load_train_config(overrides=overrides))
    assert seen == [0, 1, 2]
    from ead.training.logger import read_metrics

    assert [r["policy/updates"] for r in read_metrics(run_dir / "metrics.jsonl")] == [4.0, 4.0, 4.0]


def test_verl_hook_passes_completed_training_steps():
    from ead.integrations.verl.recipe import ead_step

    # verl's global_steps is 1 at the first batch and grows by one per batch (whatever its mini-batches)
    assert [ead_step(g, validate=False, validate_with_ead=False) for g in (1, 2, 3)] == [0, 1, 2]
