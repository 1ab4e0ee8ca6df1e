"""EAD's SGLang processor: per-row temperatures from custom_params and the live request.

The logic runs without SGLang (a stand-in request object with ``output_ids``);
the processor class itself is exercised when ``sglang`` is importable.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from ead.integrations._optional import is_available
from ead.integrations.rows import ead_extra_args, temper, temperatures_from_request_params
from ead.schedules import EADSchedule, FixedSchedule

HAS_SGLANG = is_available("sglang")
SKIP_NO_SGLANG = "sglang is not installed (pip install 'ead-rlvr[sglang]'); the engine-free logic is tested above"

FAST = EADSchedule(warmup_tokens=2, d0=8.0, alpha=1.0, unit=1.0, tau_min=0.3)


def _params(schedule, step, output_len):
    """custom_params as SGLang's scheduler hands them over: user keys plus the live request."""
    params = ead_extra_args(schedule, step) if schedule is not None else {"other": 1}
    params["__req__"] = SimpleNamespace(origin_input_ids=[1, 2, 3], output_ids=[0] * output_len)
    return params


def _simulate(processor, steps=12):
    """Three concurrent requests decoding; t grows with each request's output_ids."""
    batch = [_params(FAST, 0, 0), _params(None, 0, 3), _params(FAST, 9, 5)]
    for _ in range(steps):
        logits = torch.randn(len(batch), 13)
        out = processor(logits.clone(), batch)
        for row, params in enumerate(batch):
            t = len(params["__req__"].output_ids)
            if "ead_schedule" not in params:
                assert torch.equal(out[row], logits[row])
            else:
                tau = FAST.temperature(t, params["ead_step"])
                torch.testing.assert_close(out[row], logits[row] / tau, rtol=1e-6, atol=1e-6)
            params["__req__"].output_ids.append(7)


def test_engine_free_logic_follows_each_request_position():
    _simulate(lambda logits, params: temper(logits, temperatures_from_request_params(params)))


def test_positions_come_from_output_ids_and_params_are_reparsed_when_changed():
    params = _params(FixedSchedule(tau=0.5), 0, 4)
    assert temperatures_from_request_params([params]).tolist() == [0.5]
    params["ead_schedule"] = FixedSchedule(tau=0.25).to_dict()  # a new object: the cache must not serve the old one
    assert temperatures_from_request_params([params]).tolist() == [0.25]
    no_req = ead_extra_args(FAST, 0)
    with pytest.raises(ValueError, match="__req__"):
        temperatures_from_request_params([no_req])
    assert temperatures_from_request_params([None, {}]).tolist() == [1.0, 1.0]


def test_missing_sglang_names_the_extra(monkeypatch):
    import importlib
    import sys

    for mod in [m for m in sys.modules if m.split(".")[0] == "sglang" or m == "ead.integrations.sglang"]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "sglang", None)
    with pytest.raises(ImportError, match=r"pip install 'ead-rlvr\[sglang\]'"):
        importlib.import_module("ead.integrations.sglang")


@pytest.mark.skipif(not HAS_SGLANG, reason=SKIP_NO_SGLANG)
def test_real_sglang_processor_class():
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    from ead.integrations.sglang import SERVER_FLAG, EADCustomLogitProcessor, generate_request

    assert issubclass(EADCustomLogitProcessor, CustomLogitProcessor)
    assert SERVER_FLAG == "--enable-custom-logit-processor"
    # SGLang ships the class to the server as a dill string and rebuilds it there.
    processor = CustomLogitProcessor.from_str(EADCustomLogitProcessor.to_str())
    assert isinstance(processor, EADCustomLogitProcessor)
    _simulate(processor)
    with pytest.raises(ValueError, match="speculative"):
        processor(torch.zeros(4, 5), [_params(FAST, 0, 0)] * 2)

    body = generate_request(FAST, 3, text="1+1=", max_new_tokens=8)
    json.dumps(body)  # the /generate body must be JSON
    assert body["sampling_params"]["temperature"] == 1.0 and body["return_logprob"] is True
    assert body["sampling_params"]["custom_params"]["ead_step"] == 3
    # nothing left for a server's model-derived defaults (generation_config.json) to fill in
    assert body["sampling_params"]["repetition_penalty"] == 1.0 and body["sampling_params"]["min_p"] == 0.0
    assert body["sampling_params"]["top_k"] == -1 and body["sampling_params"]["min_new_tokens"] == 0
    assert generate_request(FAST, 0, text="x", min_p=0.1)["sampling_params"]["min_p"] == 0.1  # asked for: kept
    with pytest.raises(ValueError, match="temperature"):
        generate_request(FAST, 0, text="x", temperature=0.7)
