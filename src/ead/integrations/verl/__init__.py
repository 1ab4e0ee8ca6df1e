"""EAD in verl: a recipe reproducing the paper's setup, and the hook that feeds the global step.

* :mod:`ead.integrations.verl.recipe` (PyYAML only): the recipe's path, its EAD contract
  (``check_recipe``) and the pure helpers the hook uses. ``python -m ead.integrations.verl.recipe``
  prints the launch command with this installation's paths.
* :mod:`ead.integrations.verl.hooks` (needs verl): the agent-loop managers that stamp each
  rollout batch with the training step, and the single-turn agent loop that puts the schedule
  and step into every vLLM request's ``extra_args``.

See ``docs/integrations.md`` for how to run it and what was verified.
"""
