"""Data-parallel training across processes through Hugging Face accelerate (DDP underneath).

Launch with ``accelerate launch --multi_gpu --num_processes N -m ead.cli train ...``; on a machine
without GPUs add ``model.device=cpu`` and accelerate runs N CPU processes over gloo (its ``--cpu``
flag would mean a single process). ``torchrun --nproc_per_node N -m ead.cli train`` works too. Each process takes every N-th prompt of the global batch, samples and grades its own groups
(groups never straddle processes, so group-relative advantages stay exact), and DDP averages the
gradients. With the per-sequence aggregations and equal group counts per process this equals the
single-process loss on the whole batch; with ``token_mean`` each process normalises by its own
token count, the usual DDP approximation. Rank 0 alone evaluates, logs and writes checkpoints.

A single process (plain ``ead train``) never imports accelerate.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

# Metrics that add up over processes; every other metric is averaged.
SUMMED_METRICS = ("sampling/responses", "reward/grade_errors", "reward/grade_timeouts", "sampling/groups_kept")


def launched_distributed() -> bool:
    """True when started by ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class Distributed:
    """Rank information and the accelerate handle (None in a single process)."""

    rank: int = 0
    world_size: int = 1
    accelerator: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list) -> list:
        """This process's share: every ``world_size``-th item starting at ``rank``."""
        return items[self.rank :: self.world_size]

    def prepare(self, model, optimizer):
        if not self.enabled:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model) if self.enabled else model

    def backward(self, loss: torch.Tensor) -> None:
        if self.enabled:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def no_sync(self, model, last_micro_batch: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a mini-batch."""
        if self.enabled and not last_micro_batch:
            return model.no_sync()
        return nullcontext()

    def barrier(self) -> None:
        if self.enabled:
            self.accelerator.wait_for_everyone()

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def check_replicas_in_sync(self, model) -> None:
        """Raise if the model replicas have drifted apart (they must stay identical under DDP)."""
        if not self.enabled:
            return
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in model.parameters()))
        checksums = self.gather_objects(checksum)
        if max(checksums) - min(checksums) > 1e-6 * max(1.0, abs(checksum)):
            raise RuntimeError(f"data-parallel replicas diverged: parameter checksums {checksums}")

    def reduce_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Average (or sum, for counts) each metric over processes."""
        if not self.enabled:
            return metrics
        gathered = self.gather_objects(metrics)
        out = {}
        for key in metrics:
            values = [m[key] for m in gathered if m.get(key) is not None]
            if not values or not isinstance(values[0], (int, float)):
                out[key] = metrics[key]
            elif key in SUMMED_METRICS:
                out[key] = sum(values)
            else:
                out[key] = sum(values) / len(values)
        return out


def setup_distributed(device_name: str) -> tuple[Distributed, torch.device | None]:
    """A :class:`Distributed` for this process and the device accelerate assigned (None: decide locally)."""
    if not launched_distributed():
        return Distributed(), None
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ImportError("multi-process training needs accelerate: pip install 'ead-rlvr[accelerate]'") from exc
    accelerator = Accelerator(cpu=device_name == "cpu")
    return Distributed(accelerator.process_index, accelerator.num_processes, accelerator), accelerator.device
