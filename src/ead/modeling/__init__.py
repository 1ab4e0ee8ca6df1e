"""Local models: a character tokenizer, a tiny Qwen2 and its supervised warm start.

Import the submodules directly (``ead.modeling.tiny``, ``ead.modeling.warmstart``);
this package keeps its import cheap (no torch / transformers at import time).
"""
