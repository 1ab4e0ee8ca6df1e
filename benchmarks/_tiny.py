"""Benchmark fixtures: the built-in tiny policy (warm-started and cached) or a random one of the same shape."""

from __future__ import annotations

from pathlib import Path


def tiny_policy(warm: bool, cache_dir: str = ".cache/ead"):
    """(model, tokenizer, task) for benchmarks; ``warm=False`` skips the warm start (same shapes, random weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ead.modeling.tiny import build_char_tokenizer, build_tiny_model
    from ead.tasks.countdown import PRESETS, CountdownTask

    task = CountdownTask(PRESETS["countdown"])
    if warm:
        from ead.modeling.warmstart import warm_start

        path = warm_start(task, cache_dir)
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), task, Path(path)
    tokenizer = build_char_tokenizer()
    return build_tiny_model(tokenizer), tokenizer, task, None
