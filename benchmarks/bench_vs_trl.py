"""Time per training step: `ead train` vs TRL's GRPOTrainer on the same tiny model, batch and lengths.

Both run one generation round and one optimiser step per training step on
``prompts x generations`` completions of up to ``--new-tokens`` tokens, on CPU,
with the same thread count. Runs alternate (ead, TRL, ead, TRL) so machine noise
hits both; the first ``--skip`` steps of each run are warm-up and not counted.
Target: ead at most 0.5x TRL's time per step.

    python benchmarks/bench_vs_trl.py --prompts 8 --generations 8 --new-tokens 24 --steps 8 --model warm
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_model_dir(root: Path, warm: bool) -> Path:
    """The built-in warm-started policy (what `ead train` trains), or a random model of the same shape."""
    if warm:
        from _tiny import tiny_policy

        return tiny_policy(warm=True)[3]
    from ead.modeling.tiny import build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer)
    path = root / "tiny"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def countdown_reward(completions, prompts, **kwargs):
    from ead.tasks.base import Problem
    from ead.tasks.countdown import CountdownGrader

    grader = CountdownGrader()
    out = []
    for prompt, completion in zip(prompts, completions):
        numbers, target = prompt[:-1].split(">")
        problem = Problem(uid=prompt, prompt=prompt,
                          answer={"numbers": [int(x) for x in numbers.split()], "target": int(target), "ops": "+-"})
        out.append(grader(problem, completion).reward)
    return out


def time_trl(model_dir: Path, prompts: list[str], args, out_dir: Path) -> list[float]:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._start = [], None

        def on_step_begin(self, *a, **k):
            self._start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self._start)

    timer = StepTimer()
    config = GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, steps_per_generation=1, max_completion_length=args.new_tokens,
        max_steps=args.steps, learning_rate=2e-4, beta=0.0, num_iterations=1, temperature=1.0, top_k=0,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False, fp16=False,
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=countdown_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    return timer.times[args.skip:]


def time_ead(model_dir: Path, args, out_dir: Path) -> list[float]:
    from ead.training.config import load_train_config
    from ead.training.trainer import train

    overrides = [
        f"model.path={model_dir}", f"output.dir={out_dir}", f"train.steps={args.steps}",
        f"train.prompts_per_step={args.prompts}", f"train.samples_per_prompt={args.generations}",
        f"train.mini_batch_size={args.prompts * args.generations}",
        f"train.micro_batch_size={args.prompts * args.generations}", f"sampling.max_new_tokens={args.new_tokens}",
        "eval.every=0", "output.save_every=0", "output.progress=false",
    ]
    run_dir = train(load_train_config(overrides=overrides))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["time/step_s"] for r in records if "time/step_s" in r][args.skip:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--model", choices=["warm", "random"], default="warm",
                        help="warm: the built-in warm-started policy (responses ~12 tokens); random: same shape, "
                             "random weights (responses run to the length budget)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ead.tasks.countdown import PRESETS, CountdownTask

    task = CountdownTask(PRESETS["countdown"])
    prompts = [p.prompt for p in task.train_batch(0, 512)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_model_dir(root, warm=args.model == "warm")
        ead_times, trl_times = [], []
        for round_index in range(args.rounds):
            ead_times += time_ead(model_dir, args, root / f"ead{round_index}")
            trl_times += time_trl(model_dir, prompts, args, root / f"trl{round_index}")
    ead_median, trl_median = statistics.median(ead_times), statistics.median(trl_times)
    completions = args.prompts * args.generations
    print(f"model: {args.model}; {completions} completions/step ({args.prompts} prompts x {args.generations}), <= {args.new_tokens} new tokens, "
          f"{args.threads} thread(s), {args.rounds} alternating rounds x {args.steps - args.skip} timed steps")
    print(f"ead  median step time: {ead_median:.3f} s   (all: {', '.join(f'{t:.2f}' for t in ead_times)})")
    print(f"TRL  median step time: {trl_median:.3f} s   (all: {', '.join(f'{t:.2f}' for t in trl_times)})")
    print(f"ead / TRL time per step: {ead_median / trl_median:.3f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
