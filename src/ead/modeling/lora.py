"""LoRA adapters through ``peft`` (``pip install 'ead-rlvr[lora]'``): ``model.lora`` in ``ead train``.

LoRA (Hu et al., 2021, eq. 3) trains a low-rank update of chosen weight matrices,
``h = W0 x + (alpha / r) * B A x`` with ``A`` (r, in) and ``B`` (out, r), ``B`` zero-initialised so
the wrapped model starts equal to the base. ``W0`` stays frozen. What this means for the run:

* **the policy** is a ``peft.PeftModel``; the optimizer sees only its trainable (adapter) parameters;
* **sampling**: the lean engine drives the base model with the LoRA layers peft injected in place
  (:func:`decoder_model`): every projection is then a ``peft`` ``Linear`` whose forward adds the
  adapter, so the recorded log mu is the adapted policy's (tested against the PeftModel's forward);
* **the KL reference** is the base model itself, the adapters switched off for the reference pass
  (:class:`AdapterDisabledReference`, ``peft``'s ``disable_adapter()``), instead of a second copy;
* **checkpoints** hold the adapter only (``save_pretrained`` of a PeftModel writes
  ``adapter_config.json`` + ``adapter_model.safetensors``); resuming loads the base from
  ``model.path`` again and the adapter on top (:func:`load_adapter`).

``peft`` is imported only inside these functions, so ``ead`` without the extra still imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ead.config import ConfigError, require

__all__ = ["AdapterDisabledReference", "LoraOptions", "apply_lora", "decoder_model", "is_peft_model", "load_adapter"]

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
"""The attention projections of Llama/Qwen-family models (the LoRA paper's choice, section 7.1)."""

INSTALL_HINT = "LoRA needs the peft package: pip install 'ead-rlvr[lora]' (or pip install 'peft>=0.13')"


@dataclass
class LoraOptions:
    """``model.lora``: train LoRA adapters instead of every weight (null = full fine-tuning)."""

    r: int = 8
    """Rank of the update ``B A`` (A: r x in, B: out x r)."""
    alpha: float = 16.0
    """Scale numerator: the update is multiplied by ``alpha / r``."""
    dropout: float = 0.0
    """Dropout on the adapter's input in train mode (pi_old and sampling run in eval mode, without it)."""
    target_modules: list[str] | str = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    """Module names to adapt (a list of names matched at the end of the module path, e.g. ['q_proj', 'v_proj']),
    'all-linear' (every linear layer except the LM head), or one regular expression matched against the full path."""

    def __post_init__(self) -> None:
        require(isinstance(self.r, int) and self.r >= 1, "r", f"must be an integer >= 1, got {self.r!r}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha!r}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, list):
            require(len(self.target_modules) > 0 and all(isinstance(m, str) and m for m in self.target_modules),
                    "target_modules", "must be a non-empty list of module names (e.g. [q_proj, v_proj]), 'all-linear' or a regex")
        else:
            require(bool(self.target_modules), "target_modules", "must not be empty")


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is a ``peft.PeftModel`` (checked without importing peft)."""
    return callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config")


def decoder_model(model: Any) -> Any:
    """The transformers model under a PeftModel (its LoRA layers injected in place); any other model as is."""
    return model.get_base_model() if is_peft_model(model) else model


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError(f"model.lora is set, but {INSTALL_HINT}") from None
    return peft


def apply_lora(model: Any, options: LoraOptions, seed: int = 0, where: str = "model.lora") -> Any:
    """``model`` wrapped as a ``PeftModel`` with fresh adapters (B = 0: it starts equal to the base; A drawn from
    a generator seeded with ``seed``, the global RNG untouched); the base weights are frozen. A target list that
    matches no module raises ConfigError naming ``where``."""
    import torch

    peft = _peft()
    config = peft.LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                             target_modules=options.target_modules, bias="none", task_type="CAUSAL_LM")
    try:
        with torch.random.fork_rng(devices=[]):  # the adapter's own init stream (CPU init, then moved)
            torch.manual_seed(seed)
            wrapped = peft.get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                        if type(module).__name__ == "Linear"})
        raise ConfigError(f"{where}.target_modules {options.target_modules!r} does not fit this model "
                          f"({str(exc).splitlines()[0]}); its linear layers are named {names}") from None
    _enable_checkpointed_input_grads(wrapped)
    return wrapped


def load_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """The base ``model`` with the (trainable) adapter saved in ``adapter_dir`` by a checkpoint."""
    peft = _peft()
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json); the run was saved without "
                          "model.lora, so resume it without model.lora (or start a new output.dir)")
    wrapped = peft.PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    _enable_checkpointed_input_grads(wrapped)
    return wrapped


def _enable_checkpointed_input_grads(model: Any) -> None:
    """With gradient checkpointing and a frozen embedding, no checkpointed block's input needs a gradient, so the
    blocks would run without recording one for the adapters: make the embedding output require grad."""
    inner = decoder_model(model)
    flag = "is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing") else "is_gradient_checkpointing"
    if getattr(inner, flag, False):
        model.enable_input_require_grads()


class AdapterDisabledReference:
    """The KL reference of a LoRA policy: its base model, the adapters switched off for each call.

    Not an ``nn.Module`` on purpose: it shares the policy's modules, and ``.eval()`` /
    ``requires_grad_(False)`` on a reference must not reach the policy."""

    def __init__(self, policy: Any):
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.policy.disable_adapter():
            was_training = self.policy.training
            self.policy.eval()  # the reference is the initial policy, without dropout
            try:
                return self.policy(*args, **kwargs)
            finally:
                self.policy.train(was_training)

    def parameters(self):
        return self.policy.parameters()

    def get_output_embeddings(self):
        return self.policy.get_output_embeddings()

    def set_output_embeddings(self, head: Any) -> None:  # the chunked LM-head pass swaps the head for a call
        self.policy.set_output_embeddings(head)

    @property
    def config(self):
        return self.policy.config

    def eval(self) -> "AdapterDisabledReference":
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "AdapterDisabledReference":
        return self
