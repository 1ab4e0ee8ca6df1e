"""Per-difficulty length and per-position temperature metrics, for the paper's long-reasoning claims.

Yang et al. (2025) claim that EAD "incentivises longer reasoning on harder problems" and anneal the
behaviour temperature along the response. These pure functions turn a batch of rollouts into the
scalars that test it, logged by the trainer (``response/...``, ``behaviour/...``) and by the
periodic evaluation (``eval/...``). Problems without ``meta["difficulty"]`` are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["length_by_difficulty", "temperature_by_position"]


def length_by_difficulty(
    lengths: torch.Tensor, difficulties: Sequence[Any], correct: torch.Tensor | None, prefix: str
) -> dict[str, float]:
    """``{prefix}/length_mean/difficulty_<d>`` (and ``{prefix}/correct_frac/difficulty_<d>``) per level.

    Args:
        lengths: ``(B,)`` response lengths in tokens (EOS included, as the trainer counts them).
        difficulties: ``B`` difficulty levels (None: no level, the row is skipped).
        correct: ``(B,)`` bool or None.
        prefix: key prefix, e.g. ``"response"`` or ``"eval"``.
    """
    lengths = lengths.float().flatten()  # (B,)
    if len(difficulties) != lengths.numel():
        raise ValueError(f"{len(difficulties)} difficulty levels for {lengths.numel()} responses")
    out: dict[str, float] = {}
    for level in sorted({d for d in difficulties if d is not None}, key=str):
        rows = torch.tensor([d == level for d in difficulties])  # (B,) bool
        out[f"{prefix}/length_mean/difficulty_{level}"] = float(lengths[rows].mean())
        if correct is not None:
            out[f"{prefix}/correct_frac/difficulty_{level}"] = float(correct.flatten()[rows].float().mean())
    return out


def temperature_by_position(temperatures: torch.Tensor, mask: torch.Tensor, edges: list[int]) -> dict[str, float]:
    """Mean behaviour temperature tau_t over response tokens with position in ``[edges[i], edges[i+1])``.

    Keys ``behaviour/temperature_pos_<lo>_<hi>`` (zero-padded to 3 digits), like ``entropy/pos_*``;
    buckets without tokens are left out. ``temperatures`` and ``mask`` are ``(B, T)``.
    """
    positions = torch.arange(temperatures.shape[1]).expand_as(temperatures)  # (B, T)
    out = {}
    for low, high in zip(edges[:-1], edges[1:]):
        in_bucket = mask.bool() & (positions >= low) & (positions < high)  # (B, T)
        if in_bucket.any():
            out[f"behaviour/temperature_pos_{low:03d}_{high:03d}"] = float(temperatures[in_bucket].float().mean())
    return out
