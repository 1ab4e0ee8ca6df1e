#!/usr/bin/env python
"""Turn a JSONL / JSON / Parquet file of math problems into verl's RL parquet format.

    python scripts/verl_prepare_data.py /work/shared/data/math500.jsonl ~/data/math500/test.parquet --split test
    python scripts/verl_prepare_data.py gsm8k_test.jsonl gsm8k.parquet --prompt-field question --gsm8k-answers \\
        --data-source openai/gsm8k

Rows are read and validated by ``ead.data.load_problems`` (the loader ``ead train`` and ``ead eval``
use, so a file that trains here converts the same way). Each output row has the columns verl's
``RLHFDataset`` and reward manager read (see verl's ``examples/data_preprocess/*.py`` and
``verl.utils.reward_score.default_compute_score``):

* ``data_source`` (string): picks verl's scorer; ``DigitalLearningGmbH/MATH-lighteval`` (the default)
  routes to its ``\\boxed{}`` math scorer, ``openai/gsm8k`` to the ``#### N`` one; or point
  ``reward.custom_reward_function`` at your own;
* ``prompt`` (list of ``{role, content}`` messages): the chat the rollout engine renders with the
  model's chat template (``data.prompt_key=prompt``, verl's default);
* ``ability`` (string): ``math``;
* ``reward_model`` (struct): ``{style: "rule", ground_truth: <answer as text>}``;
* ``extra_info`` (struct): ``{split, index, uid}``.

Then ``data.train_files=<out.parquet>`` (and ``data.val_files``) in the verl recipe of
``docs/integrations.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
"""Appended to every question (verl's MATH preprocessing uses the same sentence)."""
DEFAULT_DATA_SOURCE = "DigitalLearningGmbH/MATH-lighteval"


def gsm8k_final_answer(text: str) -> str:
    """The number after GSM8K's ``####`` marker, commas removed (``"... #### 1,234"`` -> ``"1234"``)."""
    match = re.search(r"####\s*(.+?)\s*$", text.strip())
    if match is None:
        raise ValueError(f"no '#### answer' in {text[-60:]!r}")
    return match.group(1).replace(",", "")


def verl_rows(path: str, *, prompt_field: str, answer_field: str, split: str, data_source: str,
              instruction: str | None, system_prompt: str | None, gsm8k_answers: bool,
              limit: int | None = None) -> list[dict]:
    """One verl row per problem of ``path`` (validated by ead's loader: a bad row names file, row and field)."""
    from ead.data import DataError, DataSpec, load_problems

    spec = DataSpec(path=path, prompt_field=prompt_field, answer_field=answer_field, limit=limit)
    rows = []
    for index, problem in enumerate(load_problems(spec)):
        answer = problem.answer
        if gsm8k_answers:
            try:
                answer = gsm8k_final_answer(answer)
            except ValueError as exc:
                raise DataError(f"{problem.uid}: field {answer_field!r}: {exc}") from None
        content = problem.prompt if not instruction else f"{problem.prompt} {instruction}"
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": content}]
        rows.append({"data_source": data_source, "prompt": messages, "ability": "math",
                     "reward_model": {"style": "rule", "ground_truth": str(answer)},
                     "extra_info": {"split": split, "index": index, "uid": problem.uid}})
    return rows


def write_parquet(rows: list[dict], out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a .jsonl / .json / .parquet file of problems")
    parser.add_argument("output", type=Path, help="the parquet file to write")
    parser.add_argument("--prompt-field", default="problem", help="row field with the question (GSM8K: question)")
    parser.add_argument("--answer-field", default="answer", help="row field with the gold answer")
    parser.add_argument("--split", default="train", help="recorded in extra_info.split")
    parser.add_argument("--data-source", default=DEFAULT_DATA_SOURCE, help="verl's scorer key (see the docstring)")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="appended to each question ('' for none)")
    parser.add_argument("--system-prompt", default=None, help="optional system message")
    parser.add_argument("--gsm8k-answers", action="store_true", help="keep only the number after '####' in answers")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    args = parser.parse_args(argv)
    from ead.data import DataError

    try:
        rows = verl_rows(args.input, prompt_field=args.prompt_field, answer_field=args.answer_field, split=args.split,
                         data_source=args.data_source, instruction=args.instruction, system_prompt=args.system_prompt,
                         gsm8k_answers=args.gsm8k_answers, limit=args.limit)
    except DataError as exc:
        print(f"verl_prepare_data: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} rows to {write_parquet(rows, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
