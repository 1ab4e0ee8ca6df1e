"""Decompose the fork task's success into P(right first step) x P(correct | right first step).

Usage: python docs/results/fork_branch_check.py [--recipe sweep_fork_rare] [CHECKPOINT_DIR ...]

Without arguments: the fork sweep's base model under each ``base_eval`` schedule. With checkpoint
directories (``runs/sweep_fork/cells/<id>/checkpoints/step_000040``): each trained policy at tau = 1.
16 samples on each of the 60 held-out fork problems, step 0 of the schedule.
"Right branch" = the response starts with ``max-min=``; "tail ok" = graded correct given that.
"""

import json
import sys
from pathlib import Path

import torch

from ead.experiments.grid import builtin_recipe, load_sweep_config
from ead.sampling import sample
from ead.schedules import schedule_from_dict
from ead.training.config import load_train_config
from ead.training.setup import build_task, load_policy

torch.set_num_threads(1)
args = sys.argv[1:]
recipe = "sweep_fork"
if args[:1] == ["--recipe"]:
    recipe, args = args[1], args[2:]
config = load_sweep_config(builtin_recipe(recipe))
cell = config.cells()[0]
train_config = load_train_config(None, cell.overrides, algorithm=cell.algorithm)
task = build_task(train_config.task, train_config.model)
problems = task.eval_problems()
n = 16
models = args or [None]
for model_dir in models:
    if model_dir is None:
        model, tokenizer = load_policy(train_config.model, train_config.task, torch.device("cpu"))
    else:
        model, tokenizer = load_policy(train_config.model, train_config.task, torch.device("cpu"), weights_from=Path(model_dir))
    schedules = config.base_eval.schedules if model_dir is None else {"fixed-1.0": {"name": "fixed", "tau": 1.0}}
    for label, spec in schedules.items():
        rows = [p for p in problems for _ in range(n)]
        out = sample(model, tokenizer, [p.prompt for p in rows], schedule_from_dict(spec), step=0,
                     max_new_tokens=train_config.sampling.max_new_tokens, batch_size=256, seed=0)
        right = correct = correct_right = 0
        for p, text in zip(rows, out.texts):
            numbers = [int(x) for x in p.prompt.split(">")[0].split()]
            is_right = text.startswith(f"{max(numbers)}-{min(numbers)}=")
            ok = task.grader(p, text).correct
            right += is_right
            correct += ok
            correct_right += ok and is_right
        print(json.dumps({"model": "base" if model_dir is None else Path(model_dir).parent.parent.name, "schedule": label, "p_right_branch": round(right / len(rows), 3),
                          "p_correct": round(correct / len(rows), 3),
                          "p_correct_given_right": round(correct_right / max(right, 1), 3)}), flush=True)
