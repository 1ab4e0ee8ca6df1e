"""GRPO with Exploratory Annealed Decoding in TRL, in one file.

Default: a tiny randomly initialised model and a character tokenizer built on the
spot (nothing is downloaded), a toy "a+b=" task, a few steps on CPU:

    python examples/trl_ead_grpo.py --max-steps 5

With a real model and vLLM (colocate; `pip install 'ead-rlvr[trl,vllm]'`):

    python examples/trl_ead_grpo.py --model Qwen/Qwen2.5-Math-1.5B --use-vllm \\
        --num-generations 8 --max-completion-length 3072 --learning-rate 1e-6

The only differences from a plain TRL GRPO script are `EADGRPOTrainer` instead of
`GRPOTrainer`, `temperature=1.0`, and the `ead=EADOptions(...)` argument.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass, fields

import torch
from datasets import Dataset
from trl import GRPOConfig

from ead.integrations.trl import EADGRPOTrainer, EADOptions
from ead.schedules import EADSchedule


@dataclass
class Args:
    model: str | None = None
    """Hub id or local path; None builds a tiny random model and char tokenizer locally."""
    output_dir: str = "runs/trl_ead_grpo"
    """Where TRL writes logs and checkpoints."""
    max_steps: int = 5
    """Optimiser steps."""
    num_prompts: int = 64
    """Size of the toy training set."""
    per_device_train_batch_size: int = 16
    """Completions per device per step (a multiple of num_generations)."""
    num_generations: int = 8
    """Samples per prompt (the paper uses 8 or 16)."""
    max_completion_length: int = 24
    """Response budget in tokens (the paper uses 3072)."""
    learning_rate: float = 1e-3
    """1e-3 suits the tiny model; the paper used 1e-6 to 4e-6 for 1.5B/7B models."""
    tau_max: float = 1.2
    """EAD peak temperature."""
    tau_min: float = 0.1
    """EAD floor temperature (0.8 for 7B models in the paper)."""
    d0: float = 25.0
    """Initial decay length, in units of `unit` tokens."""
    alpha: float = 5.0
    """Decay-length growth per training step, in units of `unit` tokens."""
    unit: float = 20.0
    """Tokens per unit of d (20 = the authors' code)."""
    tis_cap: float = 2.0
    """C in min(pi_old / mu, C)."""
    tis_level: str = "token"
    """'token' or 'sequence'."""
    use_vllm: bool = False
    """Generate with vLLM (colocate) instead of transformers."""
    seed: int = 0
    """Seed for data, model init and sampling."""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


def addition_prompts(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n)]
    return Dataset.from_dict({"prompt": [f"{a}+{b}=" for a, b in pairs], "answer": [str(a + b) for a, b in pairs]})


def correct_sum(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """1.0 when the first number in the completion is the sum (a pure function of text)."""
    rewards = []
    for text, gold in zip(completions, answer):
        match = re.match(r"\s*(\d+)", text)
        rewards.append(1.0 if match and match.group(1) == gold else 0.0)
    return rewards


def load_model(args: Args):
    if args.model is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    config = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128, seed=args.seed)
    return build_tiny_model(tokenizer, config), tokenizer


def main() -> None:
    args = parse_args()
    print("resolved config:", args)
    model, tokenizer = load_model(args)
    schedule = EADSchedule(tau_max=args.tau_max, tau_min=args.tau_min, d0=args.d0, alpha=args.alpha, unit=args.unit)
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        temperature=1.0,  # EAD owns the temperature; TRL's must stay 1 (it also scales training log-probs)
        loss_type="dapo",  # the paper's main algorithm: clip-higher, token-level normalisation
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,  # no KL, as in DAPO
        use_vllm=args.use_vllm,
        vllm_mode="colocate",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
    )
    trainer = EADGRPOTrainer(
        model=model,
        reward_funcs=correct_sum,
        args=config,
        train_dataset=addition_prompts(args.num_prompts, args.seed),
        processing_class=tokenizer,
        ead=EADOptions(schedule=schedule, cap=args.tis_cap, level=args.tis_level),
    )
    trainer.train()
    for row in trainer.state.log_history:
        if "ead/is_truncated_frac" in row:
            print(
                f"step {row['step']}: reward {row.get('reward', float('nan')):.3f}  "
                f"tau_mean {row['ead/tau_mean']:.3f}  w_mean {row['ead/is_weight_mean']:.3f}  "
                f"truncated {row['ead/is_truncated_frac']:.3f}"
            )


if __name__ == "__main__":
    main()
