"""Metric families logged per difficulty level or per response-position bucket (``ead.training.length_metrics``).

A family is a key prefix; each key adds a level (``.../difficulty_3``) or a position bucket
(``behaviour/temperature_pos_016_032``: positions 16 to 31). The run report draws a family as one
panel with a line per key, the sweep report as one curve figure per key; both name them from here.
"""

from __future__ import annotations

BREAKDOWNS = {  # key prefix -> what the family measures
    "eval/length_mean/difficulty_": "eval response length (tokens)",
    "eval/correct_frac/difficulty_": "eval correct fraction",
    "response/length_mean/difficulty_": "training response length (tokens)",
    "behaviour/temperature_pos_": "behaviour temperature",
}
POSITION_PREFIX = "behaviour/temperature_pos_"


def breakdown_prefix(key: str) -> str | None:
    """The family ``key`` belongs to, or None."""
    return next((p for p in BREAKDOWNS if key.startswith(p)), None)


def breakdown_label(key: str) -> str:
    """``.../difficulty_3`` -> "difficulty 3"; ``behaviour/temperature_pos_016_032`` -> "positions 16-31"."""
    prefix = breakdown_prefix(key)
    rest = key.removeprefix(prefix)
    if prefix == POSITION_PREFIX:
        low, high = (int(x) for x in rest.split("_"))
        return f"positions {low}-{high - 1}"
    return f"difficulty {rest}"


def breakdown_title(key: str) -> str:
    """One key's title: "eval correct fraction, difficulty 3"."""
    return f"{BREAKDOWNS[breakdown_prefix(key)]}, {breakdown_label(key)}"


def family_title(prefix: str) -> str:
    """One family's title: "behaviour temperature by response position"."""
    return f"{BREAKDOWNS[prefix]} by {'response position' if prefix == POSITION_PREFIX else 'difficulty level'}"
