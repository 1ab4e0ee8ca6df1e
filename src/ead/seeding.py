"""Every seed a run derives from its base seed, in one place, each with a name.

A run has one base seed (``train.seed`` for ``ead train``, ``seed`` for ``ead eval``,
``base_eval.seed`` for the sweep's base inference). Everything random derives from it
here, so that two streams never collide by accident and a resumed run re-derives
exactly the seeds the uninterrupted run used. The numeric rules are frozen: changing
one changes every recorded result that used it.

* :func:`process_seed`      - the global RNGs of one training process (rank offsets it);
* :func:`periodic_eval_seed` - the held-out evaluation after ``step`` updates;
* :func:`problem_block_seed` - one block of ``ead eval`` problems (a hash of their uids,
  so it does not depend on what ran before, which is what makes a resume exact).

The engine-specific per-step rollout seed (for engines that do not draw from torch's
checkpointed global RNG) is the rollout engines' own policy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

__all__ = ["STEP_STRIDE", "periodic_eval_seed", "problem_block_seed", "process_seed", "seed_everything"]

STEP_STRIDE = 1_000_003
"""A prime stride between per-step seeds: ``seed + STEP_STRIDE * step`` never meets another
run's stream for any realistic ``seed`` and ``step``."""


def process_seed(seed: int, rank: int = 0) -> int:
    """Seed of training process ``rank``'s global RNGs: each data-parallel process samples its own responses."""
    return seed + rank


def periodic_eval_seed(seed: int, step: int) -> int:
    """Seed of the held-out evaluation after ``step`` updates (step 0 = the base policy).

    Independent of the training stream (the sampler forks the RNG), so evaluating or not
    never changes what training samples.
    """
    return seed + STEP_STRIDE * (step + 1)


def problem_block_seed(seed: int, uids: Sequence[str]) -> int:
    """Seed of one block of evaluation problems: a hash of the base seed and the block's uids (63 bits)."""
    digest = hashlib.sha256(f"{seed}|{'|'.join(uids)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def adapter_init_seed(seed: int) -> int:
    """Seed of a fresh LoRA adapter's initialisation (its A matrices): the same run seed gives the same adapter,
    whatever the global RNG went through while loading (a first warm start of the built-in model draws from it)."""
    return seed


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
