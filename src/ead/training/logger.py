"""Metrics sinks: JSONL always; TensorBoard and Weights & Biases when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ead.io import JsonlAppender, read_jsonl, repair_jsonl


class MetricsLogger:
    """Appends one JSON object per step to ``metrics.jsonl`` (flushed every line; NaN/inf become null).

    A fresh run starts a new file (the trainer refuses to start over an existing run unless asked to
    overwrite it); a resumed run keeps the records up to its checkpoint's step.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = False, wandb_project: str | None = None,
                 config: dict[str, Any] | None = None, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self._file = JsonlAppender(self.path)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("output.tensorboard needs `pip install tensorboard`") from exc
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("output.wandb_project needs `pip install wandb`") from exc
            self._wandb = wandb.init(project=wandb_project, config=config, dir=str(run_dir), resume="allow")

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint (and a torn last line): they are logged again."""
        repair_jsonl(self.path, keep=lambda record: record.get("step", 0) <= step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self._file.write({"step": step, **metrics})
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for key, value in numeric.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``; a torn last line is dropped with a warning (see :mod:`ead.io`)."""
    return read_jsonl(path, missing_ok=False)
