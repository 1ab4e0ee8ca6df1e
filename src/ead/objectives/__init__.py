"""The math of the update, as small pure functions with registries for variants.

Each function takes tensors and explicit scalars (never a config object) and
returns values plus detached statistics for logging.
"""

from ead.objectives.advantages import ADVANTAGE_ESTIMATORS, AdvantageParams, compute_advantages
from ead.objectives.importance import truncated_importance_weights
from ead.objectives.logprobs import entropy_from_logits, sequence_logprobs_and_entropy
from ead.objectives.policy_loss import LOSS_AGGREGATIONS, aggregate_loss, ppo_clip_loss
from ead.objectives.regularizers import adaptive_entropy_coef, kl_penalty_k3

# The assembled objective (ead.objectives.pipeline) and its batch-global selections
# (ead.objectives.selectors) are imported from their modules: they build on everything above.

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageParams",
    "adaptive_entropy_coef",
    "LOSS_AGGREGATIONS",
    "aggregate_loss",
    "compute_advantages",
    "entropy_from_logits",
    "kl_penalty_k3",
    "ppo_clip_loss",
    "sequence_logprobs_and_entropy",
    "truncated_importance_weights",
]
