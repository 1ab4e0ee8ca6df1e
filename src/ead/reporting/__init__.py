"""Plots and HTML reports: one run (:mod:`ead.reporting.training`), sweeps (:mod:`ead.reporting.sweep`).

Layering: reports read what runs wrote (``metrics.jsonl``, ``config.yaml``, sweep summaries) and are
called by the CLI commands; the trainer never imports them. Shared page pieces (CSS, embedded
figures, tables) live in :mod:`ead.reporting.html`.
"""
