"""A character tokenizer and a tiny Llama model, built locally, used through the Hub APIs.

Nothing here is special-cased downstream: the tokenizer is a ``tokenizers``
WordLevel model wrapped in :class:`transformers.PreTrainedTokenizerFast` and the
model a :class:`transformers.LlamaForCausalLM`; both are written with
``save_pretrained`` and read back with ``AutoTokenizer.from_pretrained`` /
``AutoModelForCausalLM.from_pretrained``, exactly like a model from the Hub.

Special tokens: ``<pad>`` (id 0), ``<bos>`` (1, defined but never added
automatically, as for Qwen), ``<eos>`` (2, ends generation), ``<unk>`` (3).
The saved tokenizer pads on the left, which is what batched generation needs.

Why Llama and not Qwen2: for a directory whose ``config.json`` says
``model_type: qwen2``, transformers 5's ``AutoTokenizer`` ignores the saved
tokenizer class and rebuilds a byte-level ``Qwen2Tokenizer`` from the vocabulary,
which silently drops spaces from a character vocabulary. For ``llama`` it honours
the saved ``TokenizersBackend``. The two architectures are otherwise the same
(RMSNorm, RoPE, SwiGLU); Llama just has no q/k/v bias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHARSET",
    "SPECIAL_TOKENS",
    "TinyModelConfig",
    "build_char_tokenizer",
    "build_tiny_model",
    "save_tiny_model",
]

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
"""In id order: pad = 0, bos = 1, eos = 2, unk = 3."""
CHARSET: str = "0123456789+-*/=,.:;>|() ?abcdefghijklmnopqrstuvwxyz"
"""Every character the tokenizer knows, one token each; anything else becomes ``<unk>``."""


class TinyModelConfigError(ValueError):
    """A tiny-model config field is out of range; the message names the field."""


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the tiny Llama (defaults: about 1.06M parameters; see docs/builtin_task.md for why not larger)."""

    num_layers: int = 4
    """Transformer blocks."""
    hidden_size: int = 128
    """Residual width."""
    num_heads: int = 4
    """Attention heads (``hidden_size`` must be divisible by it)."""
    intermediate_size: int = 512
    """Width of the SwiGLU MLP."""
    max_positions: int = 256
    """Longest prompt + response in tokens (RoPE, so only a sanity bound)."""
    tie_embeddings: bool = True
    """Share input and output embeddings (halves the embedding parameters)."""
    seed: int = 0
    """Seed of the random initialisation."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TinyModelConfigError(f"model.{name} must be an integer >= 1, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise TinyModelConfigError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by model.num_heads ({self.num_heads})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_char_tokenizer(charset: str = CHARSET):
    """A character-level :class:`~transformers.PreTrainedTokenizerFast` (one token per character)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if len(set(charset)) != len(charset):
        raise ValueError("charset has repeated characters")
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *charset])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # every character is a word
    backend.decoder = decoders.Fuse()  # join tokens without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=TinyModelConfig.max_positions,
    )


def build_tiny_model(tokenizer, config: TinyModelConfig | None = None):
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer``, with eos/pad wired in.

    ``generation_config`` stops at ``tokenizer.eos_token_id`` and pads with
    ``tokenizer.pad_token_id``; sampling defaults are plain (temperature 1, no
    top-k / top-p) so nothing silently reshapes the distribution.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = config or TinyModelConfig()
    hf_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=config.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attention_bias=False,
        mlp_bias=False,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(hf_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=64,
    )
    return model


def save_tiny_model(model, tokenizer, path: str | Path) -> Path:
    """``save_pretrained`` both into ``path`` (created if needed); returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
