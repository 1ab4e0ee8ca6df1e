#!/usr/bin/env bash
# Reproduce docs/results from scratch (2 CPU cores; see docs/results/README.md for the budget).
# Rerunning resumes: finished cells are skipped, unfinished ones continue from their checkpoint.
# A failed cell does not stop the rest (it is listed in runs/*/status.json and the report says "partial").
set -uo pipefail
status=0
ead sweep sweep_default --no-progress || status=1
ead sweep sweep_fork --no-progress || status=1
ead report runs/sweep_default runs/sweep_fork --out docs/results --command "bash docs/results/reproduce.sh" || status=1
exit $status
