"""EAD logits processors for vLLM, driven the way vLLM drives them.

Every scenario runs twice: against the pure state classes with stand-in batch
updates (always), and against the real vLLM classes (``BatchUpdate``,
``MoveDirectionality``, ``SamplingParams``, ``LogitsContext``, the processor
classes registered with vLLM) when vLLM is importable. The expected temperature
of each row is recomputed independently per row from the request's own schedule
at ``t = len(its outputs)``; rows of requests without EAD must come back
bit-identical.
"""

from __future__ import annotations

import enum
import json
import math
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from ead.integrations._optional import is_available
from ead.integrations.rows import (
    RowTemperatures,
    SlotTable,
    ead_extra_args,
    parse_ead_args,
    temper,
)
from ead.schedules import EADSchedule, FixedSchedule, Schedule

HAS_VLLM = is_available("vllm")
SKIP_NO_VLLM = "vllm is not installed (pip install 'ead-rlvr[vllm]'); the pure-state runs of the same scenarios passed"
VOCAB = 11

# Falls from 1.0 (t < 2) through ~0.92, 0.75, 0.55 to the 0.3 floor by t ~ 6 at step 0: every position differs.
FAST = EADSchedule(warmup_tokens=2, d0=8.0, alpha=1.0, unit=1.0, tau_min=0.3)
PAPER = EADSchedule()  # k = 20, d0 = 25: tau(100, step 0) = 2.2 - exp(0.2)


# ----------------------------------------------------------------------------------------------
# Stand-ins with vLLM's shapes, and the two backends
# ----------------------------------------------------------------------------------------------


class FakeDirection(enum.Enum):
    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass(frozen=True)
class FakeBatchUpdate:
    batch_size: int
    removed: list
    added: list
    moved: list


@dataclass
class FakeParams:
    extra_args: dict | None


class PureV1:
    """RowTemperatures + temper: exactly what the vLLM V1 adapter wraps."""

    name = "pure"

    def __init__(self) -> None:
        self.rows = RowTemperatures()

    @staticmethod
    def params(extra_args):
        return FakeParams(extra_args)

    @staticmethod
    def batch_update(batch_size, removed, added, moved):
        return FakeBatchUpdate(batch_size, removed, added, moved)

    @staticmethod
    def direction(swap: bool):
        return FakeDirection.SWAP if swap else FakeDirection.UNIDIRECTIONAL

    def update_state(self, batch_update) -> None:
        self.rows.apply_batch_update(batch_update)

    def apply(self, logits):
        return temper(logits, self.rows.temperatures(logits.shape[0]))


class RealV1:
    """The class vLLM loads (entry point / logits_processors), built as the V1 runner builds it."""

    name = "vllm"

    def __init__(self) -> None:
        from ead.integrations.vllm_v1 import EADLogitsProcessor

        self.proc = EADLogitsProcessor(SimpleNamespace(), torch.device("cpu"), False)

    @staticmethod
    def params(extra_args):
        from vllm import SamplingParams

        return SamplingParams(temperature=1.0, extra_args=extra_args)

    @staticmethod
    def batch_update(batch_size, removed, added, moved):
        from vllm.v1.sample.logits_processor import BatchUpdate

        return BatchUpdate(batch_size=batch_size, removed=removed, added=added, moved=moved)

    @staticmethod
    def direction(swap: bool):
        from vllm.v1.sample.logits_processor import MoveDirectionality

        return MoveDirectionality.SWAP if swap else MoveDirectionality.UNIDIRECTIONAL

    def update_state(self, batch_update) -> None:
        self.proc.update_state(batch_update)

    def apply(self, logits):
        return self.proc.apply(logits)


V1_BACKENDS = [
    pytest.param(PureV1, id="pure"),
    pytest.param(RealV1, id="vllm", marks=pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)),
]


# ----------------------------------------------------------------------------------------------
# A persistent batch that behaves like vLLM's InputBatch: the truth the processor must track
# ----------------------------------------------------------------------------------------------


@dataclass
class Req:
    schedule: Schedule | None
    step: int = 0
    prompt: list[int] = field(default_factory=lambda: [1, 2, 3])
    output: list[int] = field(default_factory=list)

    @property
    def extra_args(self) -> dict | None:
        if self.schedule is None:
            return {"unrelated": 1}  # other processors' arguments must not switch EAD on
        return ead_extra_args(self.schedule, self.step)

    def expected_tau(self) -> float:
        if self.schedule is None:
            return 1.0
        # Independent per-row recomputation: the scalar schedule at this request's own t and step.
        return self.schedule.temperature(len(self.output), self.step)


class PersistentBatch:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.slots: list[Req | None] = []
        self._removed: list[int] = []
        self._added: list[tuple] = []
        self._moved: list[tuple] = []
        self.rows_checked = 0

    def add(self, index: int, req: Req) -> None:
        while len(self.slots) <= index:
            self.slots.append(None)
        self.slots[index] = req
        self._added.append((index, self.backend.params(req.extra_args), req.prompt, req.output))

    def remove(self, index: int) -> None:
        self.slots[index] = None
        self._removed.append(index)

    def move(self, src: int, dst: int) -> None:
        while len(self.slots) <= dst:
            self.slots.append(None)
        self.slots[dst], self.slots[src] = self.slots[src], None
        self._moved.append((src, dst, self.backend.direction(False)))

    def swap(self, a: int, b: int) -> None:
        self.slots[a], self.slots[b] = self.slots[b], self.slots[a]
        self._moved.append((a, b, self.backend.direction(True)))

    def decode(self, steps: int = 1) -> None:
        for _ in range(steps):
            self._decode_once()

    def _decode_once(self) -> None:
        while self.slots and self.slots[-1] is None:
            self.slots.pop()
        assert all(s is not None for s in self.slots), "scenario bug: vLLM condenses holes before sampling"
        n = len(self.slots)
        update = None
        if self._removed or self._added or self._moved:
            update = self.backend.batch_update(n, self._removed, self._added, self._moved)
            self._removed, self._added, self._moved = [], [], []
        self.backend.update_state(update)

        logits = torch.randn(n, VOCAB, dtype=torch.float32)
        out = self.backend.apply(logits.clone())
        assert out.dtype == torch.float32 and out.shape == logits.shape
        for row, req in enumerate(self.slots):
            if req.schedule is None:
                assert torch.equal(out[row], logits[row]), f"row {row}: a request without EAD was modified"
            else:
                tau = req.expected_tau()
                torch.testing.assert_close(out[row], logits[row] / tau, rtol=1e-6, atol=1e-6)
            self.rows_checked += 1
        for req in self.slots:  # the engine appends the sampled token: t grows by one
            req.output.append(0)


# ----------------------------------------------------------------------------------------------
# V1 runner: scripted and randomised batch updates
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_cls", V1_BACKENDS)
def test_v1_scripted_add_remove_move_swap(backend_cls):
    batch = PersistentBatch(backend_cls())
    r0, r1, r2, r3 = Req(FAST, 0), Req(None), Req(FAST, 7), Req(PAPER, 3)
    for i, r in enumerate([r0, r1, r2, r3]):
        batch.add(i, r)
    batch.decode(3)

    batch.remove(1)  # a plain request leaves; its row is refilled by a fixed-temperature request
    batch.add(1, Req(FixedSchedule(tau=0.7), 2))
    batch.decode(2)

    batch.swap(0, 3)  # EAD rows trade places: each keeps its own t and step
    batch.decode(2)

    batch.remove(2)
    batch.move(3, 2)  # condense: one-way move into the hole
    batch.decode(2)

    batch.remove(0)  # an EAD row is replaced by a plain one in the same update
    batch.add(0, Req(None))
    batch.decode(2)

    # One update with all three kinds, which vLLM orders removed -> added -> moved:
    # the request added at 0 must end up in row 1 after the swap.
    batch.remove(0)
    batch.add(0, Req(FAST, 1))
    batch.swap(0, 1)
    batch.decode(3)
    assert batch.slots[1].schedule is FAST and batch.slots[0].schedule is not FAST
    assert max(len(r.output) for r in batch.slots) >= 10  # positions crossed the warm-up and the decay


@pytest.mark.parametrize("backend_cls", V1_BACKENDS)
def test_v1_random_batch_updates_match_reference(backend_cls):
    rng = random.Random(1234)
    batch = PersistentBatch(backend_cls())
    choices = [None, FAST, PAPER, FixedSchedule(tau=0.5)]
    for _ in range(60):
        live = [i for i, s in enumerate(batch.slots) if s is not None]
        op = rng.random()
        if op < 0.35 or not live:
            # add at the first hole or at the end
            holes = [i for i, s in enumerate(batch.slots) if s is None]
            batch.add(holes[0] if holes else len(batch.slots), Req(rng.choice(choices), rng.randint(0, 50)))
        elif op < 0.55 and len(live) > 1:
            victim = rng.choice(live)
            batch.remove(victim)
            last = max(i for i, s in enumerate(batch.slots) if s is not None) if any(batch.slots) else -1
            if last > victim:
                batch.move(last, victim)  # condense as vLLM does
        elif op < 0.75 and len(live) > 1:
            a, b = rng.sample(live, 2)
            batch.swap(a, b)
        batch.decode(rng.randint(1, 3))
    assert batch.rows_checked > 150


def test_row_temperatures_are_the_schedule_values():
    """Hand-worked values: the processor's tau is the schedule's, in float32."""
    rows = RowTemperatures()
    outputs = [list(range(100)), list(range(5)), list(range(371))]
    rows.add(0, ead_extra_args(PAPER, 0), outputs[0])
    rows.add(1, ead_extra_args(PAPER, 0), outputs[1])  # t = 5 < c = 10: exactly 1
    rows.add(2, ead_extra_args(PAPER, 0), outputs[2])  # t = 371: tau_min
    rows.add(3, None, [])
    tau = rows.temperatures(4)
    assert tau.dtype == torch.float32
    assert tau[0].item() == pytest.approx(2.2 - math.exp(100 / 500), abs=1e-6)
    assert tau[1].item() == 1.0 and tau[3].item() == 1.0
    assert tau[2].item() == pytest.approx(0.1, abs=1e-6)
    outputs[0].extend([0] * 100)  # the live list grows: t = 200 at the next call
    assert rows.temperatures(4)[0].item() == pytest.approx(2.2 - math.exp(200 / 500), abs=1e-6)


def test_temper_bf16_input_gives_float32_and_untouched_rows_stay_exact():
    logits = torch.randn(3, 7).to(torch.bfloat16)
    out = temper(logits, torch.tensor([1.0, 0.5, 1.0]))
    assert out.dtype == torch.float32
    assert torch.equal(out[0], logits[0].float()) and torch.equal(out[2], logits[2].float())
    torch.testing.assert_close(out[1], logits[1].float() * 2)


def test_parse_ead_args_accepts_dict_and_json_and_rejects_garbage():
    assert parse_ead_args(None) is None and parse_ead_args({"other": 1}) is None
    as_dict = parse_ead_args(ead_extra_args(FAST, 4))
    as_json = parse_ead_args(ead_extra_args(FAST, 4, as_json=True))
    assert as_dict == as_json and as_dict.schedule == FAST and as_dict.step == 4.0
    with pytest.raises(ValueError, match="ead_schedule"):
        parse_ead_args({"ead_schedule": {"name": "nope"}})
    with pytest.raises(ValueError, match="ead_schedule"):
        parse_ead_args({"ead_schedule": "{not json"})
    with pytest.raises(ValueError, match="ead_step"):
        parse_ead_args({"ead_schedule": FAST.to_dict(), "ead_step": -1})
    with pytest.raises(ValueError, match="ead_step"):
        parse_ead_args({"ead_schedule": FAST.to_dict(), "ead_step": True})


# ----------------------------------------------------------------------------------------------
# Model runner V2: persistent slots, rows reordered every step, t = pos + 1 - prompt_len
# ----------------------------------------------------------------------------------------------


class PureV2:
    name = "pure"

    def __init__(self, max_slots: int) -> None:
        self.table = SlotTable(max_slots)
        self.prompt_len = [0] * max_slots

    @staticmethod
    def params(extra_args):
        return FakeParams(extra_args)

    def add_request(self, slot: int, params, prompt_len: int) -> bool:
        return self.table.set(slot, params.extra_args, prompt_len)

    def apply_staged_writes(self) -> None:
        self.table.flush()

    def apply(self, logits, slots: torch.Tensor, pos: torch.Tensor):
        if not self.table.any_active(slots.tolist()):
            return logits
        return temper(logits, self.table.temperatures(slots, pos))


class RealV2:
    name = "vllm"

    def __init__(self, max_slots: int) -> None:
        from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcRequestState

        from ead.integrations.vllm_v1 import EADLogitsProcessor

        # The real frozen dataclass vLLM passes. Its buffers need pinned memory / a GPU to build,
        # so the one field the processor reads (prompt_len's host mirror) is a plain numpy array.
        import numpy as np

        self.prompt_len_np = np.zeros(max_slots, dtype=np.int32)
        req_states = LogitsProcRequestState(
            device=torch.device("cpu"),
            max_num_reqs=max_slots,
            vocab_size=VOCAB,
            all_token_ids=None,
            prompt_len=SimpleNamespace(np=self.prompt_len_np),
            prefill_len=None,
            total_len=None,
        )
        self.proc = EADLogitsProcessor(SimpleNamespace(), req_states)

    @staticmethod
    def params(extra_args):
        from vllm import SamplingParams

        return SamplingParams(temperature=1.0, extra_args=extra_args)

    def add_request(self, slot: int, params, prompt_len: int) -> bool:
        self.prompt_len_np[slot] = prompt_len  # vLLM's RequestState writes this before the sampler's add_request
        return self.proc.add_request(slot, params)

    def apply_staged_writes(self) -> None:
        self.proc.apply_staged_writes()

    def apply(self, logits, slots: torch.Tensor, pos: torch.Tensor):
        from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

        ctx = LogitsContext(
            expanded_idx_mapping=slots,
            idx_mapping=slots,
            idx_mapping_np=slots.numpy(),
            expanded_local_pos=torch.zeros_like(slots),
            input_ids=torch.zeros_like(slots),
            pos=pos,
            seq_lens_upper_bound_np=(pos + 1).numpy(),
        )
        return self.proc.apply(logits, ctx)


V2_BACKENDS = [
    pytest.param(PureV2, id="pure"),
    pytest.param(RealV2, id="vllm", marks=pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)),
]


@pytest.mark.parametrize("backend_cls", V2_BACKENDS)
def test_v2_slots_with_reordered_rows(backend_cls):
    rng = random.Random(7)
    max_slots = 6
    backend = backend_cls(max_slots)
    live: dict[int, Req] = {}
    free = list(range(max_slots))
    checked = 0
    choices = [None, FAST, PAPER, FixedSchedule(tau=0.8)]
    for step in range(40):
        if free and (rng.random() < 0.4 or not live):
            slot = free.pop(rng.randrange(len(free)))  # slots are recycled in any order
            req = Req(rng.choice(choices), rng.randint(0, 30), prompt=[5] * rng.randint(1, 9))
            uses_ead = backend.add_request(slot, backend.params(req.extra_args), len(req.prompt))
            assert uses_ead == (req.schedule is not None)
            live[slot] = req
        if len(live) > 1 and rng.random() < 0.25:
            slot = rng.choice(sorted(live))
            del live[slot]  # V2 has no remove hook: the next occupant's add_request overwrites
            free.append(slot)
        backend.apply_staged_writes()

        order = sorted(live)
        rng.shuffle(order)  # rows are reordered every step
        slots = torch.tensor(order, dtype=torch.long)
        # pos = index of the last input token in prompt+response; the token sampled now is at t = len(output)
        pos = torch.tensor([len(live[s].prompt) + len(live[s].output) - 1 for s in order], dtype=torch.long)
        logits = torch.randn(len(order), VOCAB)
        out = backend.apply(logits.clone(), slots, pos)
        for row, slot in enumerate(order):
            req = live[slot]
            if req.schedule is None:
                assert torch.equal(out[row], logits[row])
            else:
                torch.testing.assert_close(out[row], logits[row] / req.expected_tau(), rtol=1e-6, atol=1e-6)
            checked += 1
        for req in live.values():
            req.output.append(0)
    assert checked > 100


# ----------------------------------------------------------------------------------------------
# Real-vLLM-only checks: registration and validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)
def test_processor_passes_both_vllm_loaders():
    from vllm.v1.sample.logits_processor import _load_logitsprocs_by_fqcns
    from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_by_fqcns

    from ead.integrations.vllm_args import PROCESSOR_FQCN
    from ead.integrations.vllm_v1 import EADLogitsProcessor

    assert _load_logitsprocs_by_fqcns([PROCESSOR_FQCN]) == [EADLogitsProcessor]
    assert _load_v2_logitsprocs_by_fqcns([PROCESSOR_FQCN]) == [EADLogitsProcessor]


@pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)
def test_entry_point_plugin_loads_under_both_runners():
    from ead.integrations.vllm_args import entry_point_installed

    if not entry_point_installed():
        pytest.skip("ead-rlvr's vllm.logits_processors entry point is not installed in this environment")
    from vllm.v1.sample.logits_processor import _load_logitsprocs_plugins
    from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_plugins

    from ead.integrations.vllm_v1 import EADLogitsProcessor

    assert EADLogitsProcessor in _load_logitsprocs_plugins()
    assert EADLogitsProcessor in _load_v2_logitsprocs_plugins()  # a V1-only class would raise here


@pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)
def test_validate_params_rejects_bad_requests_and_duplicate_registration_is_inert():
    from vllm import SamplingParams

    from ead.integrations.vllm_v1 import EADLogitsProcessor

    EADLogitsProcessor.validate_params(SamplingParams(extra_args=ead_extra_args(FAST, 3)))
    EADLogitsProcessor.validate_params(SamplingParams())
    with pytest.raises(ValueError, match="ead_schedule"):
        EADLogitsProcessor.validate_params(SamplingParams(extra_args={"ead_schedule": {"name": "ead", "tau_min": -1}}))

    config = SimpleNamespace()  # entry point + explicit registration: two instances for one engine
    first = EADLogitsProcessor(config, torch.device("cpu"), False)
    second = EADLogitsProcessor(config, torch.device("cpu"), False)
    added = [(0, SamplingParams(extra_args=ead_extra_args(FAST, 0)), [1], list(range(5)))]
    from vllm.v1.sample.logits_processor import BatchUpdate

    for proc in (first, second):
        proc.update_state(BatchUpdate(batch_size=1, removed=[], added=added, moved=[]))
    logits = torch.randn(1, VOCAB)
    once = second.apply(first.apply(logits.clone()))
    torch.testing.assert_close(once, logits / FAST.temperature(5, 0))


# ----------------------------------------------------------------------------------------------
# vllm_args: engine and request arguments
# ----------------------------------------------------------------------------------------------


def test_engine_kwargs_sets_logprobs_mode_and_registers_processor():
    from ead.integrations.vllm_args import PROCESSOR_FQCN, engine_kwargs

    kwargs = engine_kwargs(model="m", register=True, tensor_parallel_size=2)
    assert kwargs["logprobs_mode"] == "processed_logprobs"
    assert kwargs["generation_config"] == "vllm"  # no request defaults from the checkpoint
    assert kwargs["logits_processors"] == [PROCESSOR_FQCN] and kwargs["tensor_parallel_size"] == 2
    assert "logits_processors" not in engine_kwargs(model="m", register=False)
    assert engine_kwargs(model="m", register=True, logits_processors=[PROCESSOR_FQCN])["logits_processors"] == [
        PROCESSOR_FQCN
    ]


def test_engine_kwargs_rejects_settings_that_break_ead():
    from ead.integrations.vllm_args import EADConfigError, engine_kwargs

    with pytest.raises(EADConfigError, match="speculative decoding"):
        engine_kwargs(model="m", speculative_config={"method": "ngram", "num_speculative_tokens": 3})
    with pytest.raises(EADConfigError, match="processed_logprobs"):
        engine_kwargs(model="m", logprobs_mode="raw_logprobs")
    with pytest.raises(EADConfigError, match="pooling"):
        engine_kwargs(model="m", runner="pooling")


def test_sampling_kwargs_and_rest_payload():
    from ead.integrations.vllm_args import EADConfigError, rest_payload, sampling_kwargs, serve_args

    kw = sampling_kwargs(PAPER, 12, n=8, max_tokens=3072, top_p=0.95, extra_args={"mine": 1})
    assert kw["temperature"] == 1.0 and kw["logprobs"] == 0 and kw["n"] == 8 and kw["top_p"] == 0.95
    assert kw["extra_args"]["mine"] == 1
    assert parse_ead_args(kw["extra_args"]).schedule == PAPER and kw["extra_args"]["ead_step"] == 12
    with pytest.raises(EADConfigError, match="temperature"):
        sampling_kwargs(PAPER, 0, temperature=0.6)
    with pytest.raises(EADConfigError, match="beam"):
        sampling_kwargs(PAPER, 0, use_beam_search=True)

    body = rest_payload(PAPER, 3, max_tokens=16)
    xargs = body["vllm_xargs"]
    # REST vllm_xargs carries only flat values: the schedule is a JSON string
    assert isinstance(xargs["ead_schedule"], str) and json.loads(xargs["ead_schedule"])["name"] == "ead"
    assert parse_ead_args(xargs).schedule == PAPER and "extra_args" not in body
    assert serve_args(register=True)[-2:] == ["--logits-processors", "ead.integrations.vllm_v1:EADLogitsProcessor"]
    assert serve_args(register=False) == ["--logprobs-mode", "processed_logprobs", "--generation-config", "vllm"]


@pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)
def test_sampling_params_is_a_real_vllm_object():
    from vllm import SamplingParams

    from ead.integrations.vllm_args import sampling_params

    sp = sampling_params(FAST, 5, n=2, max_tokens=8)
    assert isinstance(sp, SamplingParams) and sp.temperature == 1.0 and sp.logprobs == 0
    assert parse_ead_args(sp.extra_args).step == 5.0


def test_missing_vllm_names_the_extra(monkeypatch):
    import importlib
    import sys

    for mod in [m for m in sys.modules if m.split(".")[0] == "vllm" or m.startswith("ead.integrations.vllm_v")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes any `import vllm...` fail, installed or not
    for module in ("ead.integrations.vllm_v1", "ead.integrations.vllm_v2"):
        with pytest.raises(ImportError, match=r"pip install 'ead-rlvr\[vllm\]'"):
            importlib.import_module(module)


# ----------------------------------------------------------------------------------------------
# GPU: distribution, returned log-probs and throughput inside a real engine
# ----------------------------------------------------------------------------------------------


def _load_benchmark():
    """Import benchmarks/vllm_ead_throughput.py (not a package) as a module."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "vllm_ead_throughput.py"
    spec = importlib.util.spec_from_file_location("vllm_ead_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none in this session)")
@pytest.mark.skipif(not HAS_VLLM, reason=SKIP_NO_VLLM)
def test_vllm_engine_samples_tempered_distribution_on_gpu(tmp_path):
    """Runs benchmarks/vllm_ead_throughput.py's checks on a tiny local model (no download)."""
    bench = _load_benchmark()
    report = bench.run(bench.Args(model=None, workdir=str(tmp_path), quick=True, out=""))
    assert report["chi_square"]["p_value_min"] > 1e-4, report["chi_square"]
    assert report["chi_square"]["fixed_tau_0.5"]["p_value_vs_tau1"] < 1e-6  # the test has power
    assert report["logprobs"]["max_abs_err"] < 2e-3, report["logprobs"]
    assert report["logprobs"]["max_gap_to_tau1"] > 0.1  # returned log-probs are the tempered ones
    assert report["throughput"]["ratio"] > 0.9, report["throughput"]  # full run (docs) targets >= 0.97


def test_benchmark_chi_square_has_power_and_size():
    """The benchmark's chi-square helper on CPU: accepts the right tau, rejects tau = 1 (no GPU needed)."""
    bench = _load_benchmark()
    z = torch.randn(55, generator=torch.Generator().manual_seed(3)) * 1.5
    rng = torch.Generator().manual_seed(0)
    tempered = torch.softmax(z / 0.5, dim=0)
    counts = torch.bincount(torch.multinomial(tempered, 4000, replacement=True, generator=rng), minlength=55)
    assert bench.chi_square(counts, tempered)["p_value"] > 1e-3
    assert bench.chi_square(counts, torch.softmax(z, dim=0))["p_value"] < 1e-6
    one_cell = bench.chi_square(torch.tensor([100, 0]), torch.tensor([1.0, 0.0]))
    assert math.isnan(one_cell["p_value"])  # no degrees of freedom: never a silent pass
