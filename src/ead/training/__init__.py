"""The single-machine RLVR trainer (GRPO, DAPO and relatives) with EAD rollouts."""
