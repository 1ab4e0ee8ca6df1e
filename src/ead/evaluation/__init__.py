"""``ead eval``: sampled evaluation of a model under one or more temperature schedules.

* :mod:`ead.evaluation.runner`  - :class:`EvalConfig` and :func:`run_eval` (resumable JSONL records).
* :mod:`ead.evaluation.report`  - summary with bootstrap intervals, plots, printed tables.
* :mod:`ead.evaluation.command` - the ``eval`` subcommand (``register(subparsers)``).
"""

from ead.evaluation.runner import EvalConfig, run_eval

__all__ = ["EvalConfig", "run_eval"]
