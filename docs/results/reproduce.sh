#!/usr/bin/env bash
# Reproduce docs/results from scratch on 2 CPU cores (see docs/results/README.md for the budget).
# The two sweeps run side by side, one cell each at a time (2 processes in all, one thread each),
# so that if time runs out both tasks have covered the same seeds (cells run seed-major).
# Rerunning resumes: finished cells are skipped, unfinished ones continue from their checkpoint.
# A failed cell does not stop the rest (it is listed in runs/*/status.json; the report says "partial").
set -uo pipefail
mkdir -p runs
ead sweep sweep_default jobs=1 --no-progress > runs/sweep_default.log 2>&1 &
default_pid=$!
ead sweep sweep_fork jobs=1 --no-progress > runs/sweep_fork.log 2>&1 &
fork_pid=$!
status=0
wait $default_pid || status=1
wait $fork_pid || status=1
ead report runs/sweep_default runs/sweep_fork --out docs/results --finding docs/results/finding.md \
  --command "bash docs/results/reproduce.sh" || status=1
exit $status
