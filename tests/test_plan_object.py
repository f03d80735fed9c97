"""One request in, one plan object out: what `plan` decides is a Plan made from a Request; run,
bench and tune execute Plans; a saved plan document stores its request whole, so that it parses
back into the plan it was, for every option a request has (tested field by field, and all at
once), and the two agree on everything a run depends on."""

from __future__ import annotations

import dataclasses
import json

import pytest

import gpusplit
from gpusplit.base.errors import InputError
from gpusplit.documents.read import plan_from_document
from gpusplit.documents.render import plan_document
from gpusplit.planning.launch import engine_params
from gpusplit.planning.planner import without_repack
from gpusplit.planning.request import Request
from gpusplit.synthetic import write_tiny_lora, write_tiny_projector

GPUS = ["24GiB", "24GiB"]
MIB = 2**20


def _facts(doc: dict) -> dict:
    """What a run depends on: the load's parameters, where the bytes go and whether they fit, and
    the prediction its timings are compared with."""
    return {
        "request": doc["request"],
        "engine_params": doc["engine_params"],
        "llama_args": doc["llama_args"],
        "fits": doc["fits"],
        "planned": [
            (d["name"], d["weights_bytes"], d["kv_bytes"], d["compute_bytes"], d["reserve_bytes"], d["planned_bytes"])
            for d in doc["devices"]
        ],
        "host": (doc["host"]["weights_bytes"], doc["host"]["planned_bytes"], doc["host"]["weight_buffers"]),
        "predicted": (doc["predicted"]["tg_tokens_per_s"], doc["predicted"]["pp_tokens_per_s"]),
        "draft": doc.get("draft"),
    }


@pytest.fixture(scope="module")
def companions(tmp_path_factory, tiny_model):
    """A LoRA adapter, a draft model and a projector for the tiny dense model."""
    folder = tmp_path_factory.mktemp("companions")
    return {
        "lora": (str(write_tiny_lora(folder / "lora.gguf", "dense-f16")),),
        "draft": str(tiny_model("tied-f16")),
        "mmproj": str(write_tiny_projector(folder / "mmproj.gguf")),
    }


# One value for each field of the Request, other than its default, that the tiny dense model on two
# hypothetical GPUs can be planned with (None: taken from the companions fixture).
EVERY_FIELD = {
    "n_ctx": 1024,
    "n_batch": 1024,
    "n_ubatch": 256,
    "n_parallel": 2,
    "users": 3,
    "type_k": "q8_0",
    "type_v": "q8_0",
    "flash_attn": True,
    "swa_full": False,
    "split_mode": "layer",
    "tensor_split": (0.3, 0.7),
    "n_gpu_layers": 5,
    "main_gpu": 1,
    "n_cpu_moe": 1,
    "spread": True,
    "reserve": (256 * MIB, 128 * MIB),
    "cpu_bandwidth": 40e9,
    "allow_ctx_overflow": True,
    "lora": None,
    "draft": None,
    "n_gpu_layers_draft": 3,
    "mmproj": None,
    "no_repack": True,
    "n_threads": 2,
}
# fields that need another alongside them (a quantized V cache needs flash attention; a draft's
# layers need a draft)
ALONGSIDE = {"type_v": {"flash_attn": True}, "n_gpu_layers_draft": {"draft": None}}


def _value(name, companions):
    value = EVERY_FIELD[name]
    return companions[name] if value is None else value


def test_every_field_of_the_request_is_covered():
    """A field added to the Request and not here fails: the round trip must cover it."""
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(Request)}
    for name, value in EVERY_FIELD.items():
        if value is not None:
            assert value != getattr(Request(), name), name


def _round_trip(model, devices, request):
    planned = gpusplit.plan(model, devices, request)
    saved = json.loads(json.dumps(plan_document(planned)))  # as a file holds it
    parsed = plan_from_document(saved, devices)
    return planned, saved, parsed


@pytest.mark.parametrize("name", sorted(EVERY_FIELD))
def test_a_saved_plan_keeps_each_field_of_its_request(tiny_model, companions, name):
    model = gpusplit.read_model(tiny_model("dense-f16"))
    devices = gpusplit.detect_devices(gpus=GPUS)
    changes = {name: _value(name, companions)}
    for other in ALONGSIDE.get(name, {}):
        changes[other] = _value(other, companions)
    request = Request(**changes)
    planned, saved, parsed = _round_trip(model, devices, request)
    assert parsed.request == request
    assert _facts(plan_document(parsed)) == _facts(saved)
    assert engine_params(parsed) == engine_params(planned)


def test_a_saved_plan_keeps_every_field_at_once(tiny_model, companions):
    model = gpusplit.read_model(tiny_model("dense-f16"))
    devices = gpusplit.detect_devices(gpus=GPUS)
    request = Request(**{name: _value(name, companions) for name in EVERY_FIELD})
    _, saved, parsed = _round_trip(model, devices, request)
    assert parsed.request == request
    assert _facts(plan_document(parsed)) == _facts(saved)
    # what each option did, seen in the plan itself, not only in the request it keeps
    assert saved["engine_params"]["lora"] == list(companions["lora"])
    assert saved["llama_args"][-6:] == ["--mmproj", companions["mmproj"], "-md", companions["draft"], "-ngld", "3"]
    assert [d["reserve_bytes"] for d in saved["devices"]] == [256 * MIB, 128 * MIB]
    assert saved["engine_params"]["no_repack"] and saved["engine_params"]["n_threads"] == 2


def test_a_request_is_checked_when_a_script_builds_it():
    """Ranges are declared on the Request's types and checked on construction (msgspec checks the
    same when a saved plan is read): the error names the parameter."""
    for changes, parameter in [
        ({"n_parallel": 300}, "n_parallel"),
        ({"n_gpu_layers": 2**63}, "n_gpu_layers"),
        ({"tensor_split": (float("nan"), 1.0)}, "tensor_split"),
        ({"tensor_split": (0.0, 0.0)}, "tensor_split"),
        ({"cpu_bandwidth": -1.0}, "cpu_bandwidth"),
        ({"cpu_bandwidth": float("inf")}, "cpu_bandwidth"),
        ({"type_k": "q9"}, "type_k"),
        ({"n_ubatch": 1024}, "n_ubatch"),
        ({"reserve": (-1,)}, "reserve"),
        ({"main_gpu": 16}, "main_gpu"),
    ]:
        with pytest.raises(InputError) as caught:
            Request(**changes)
        assert caught.value.parameter == parameter, changes
        assert parameter in caught.value.message  # the library speaks parameters, never flags
        assert "--" not in caught.value.message + caught.value.hint


def test_tune_moves_are_the_request_with_one_field_changed():
    from gpusplit.jobs.tune import TUNED, neighbours

    base = Request(n_ctx=1024, split_mode="layer", tensor_split=(0.5, 0.5), n_gpu_layers=4)
    for move in neighbours(base, n_devices=2, n_layer=6, cores=2, repack=True):
        changed = {f.name for f in dataclasses.fields(Request) if getattr(move, f.name) != getattr(base, f.name)}
        assert changed and changed <= set(TUNED) | {"n_batch"}, changed
        assert len(changed - {"n_batch"}) == 1  # n_batch follows n_ubatch up, never alone
        assert move.n_ctx == 1024  # what the user fixed stays


def test_a_saved_plan_names_its_file_and_devices(header_only_model):
    devices = gpusplit.detect_devices(gpus=GPUS)
    saved = plan_document(gpusplit.plan(header_only_model("llama-3.1-8b"), devices))
    other = dict(saved, engine_params=dict(saved["engine_params"], model_path=str(header_only_model("llama-3.1-70b"))))
    with pytest.raises(InputError, match="made for another file"):
        plan_from_document(other, devices)
    with pytest.raises(InputError, match="the plan is for GPU0, GPU1; the devices here are GPU0"):
        plan_from_document(saved, gpusplit.detect_devices(gpus=["24GiB"]))


def test_a_plan_1_document_still_parses(header_only_model):
    """Documents saved before plans kept their request: the request is rebuilt from the load's
    engine parameters, and the plan is the same."""
    devices = gpusplit.detect_devices(gpus=GPUS)
    request = Request(n_ctx=8192, split_mode="layer", tensor_split=(3.0, 1.0), n_gpu_layers=20, type_k="q8_0")
    planned = gpusplit.plan(header_only_model("llama-3.1-8b"), devices, request)
    saved = plan_document(planned)
    old = {k: v for k, v in saved.items() if k != "request"}
    old["schema"] = "gpusplit.plan/1"
    params = dict(old["engine_params"])
    params["use_extra_bufts"] = not params.pop("no_repack")
    old["engine_params"] = params
    old["reasons"] = [r["text"] for r in saved["reasons"]]
    parsed = plan_from_document(old, devices)
    assert engine_params(parsed) == engine_params(planned)


def test_no_repack_is_the_same_plan_without_the_hosts_copies(header_only_model):
    """A crash with the CPU's extra buffer types on is run again with --no-repack: the plan it ran
    is the same configuration whose host keeps only the mapped file, and it says why."""
    from gpusplit.base.reasons import Reason

    planned = gpusplit.plan(header_only_model("llama-3.1-8b"), gpusplit.detect_devices(gpus=["8GiB"]), Request(n_gpu_layers=0))
    again = without_repack(planned, Reason("recovered", "llama.cpp crashed (SIGSEGV): ran it again with --no-repack"))
    before, after = plan_document(planned), plan_document(again)
    assert after["engine_params"] == {**before["engine_params"], "no_repack": True}
    assert after["request"] == {**before["request"], "no_repack": True}
    assert after["llama_args"] == [*before["llama_args"], "--no-repack"]
    assert set(after["host"]["weight_buffers"]) <= {"CPU_Mapped"}
    copies = set(before["host"]["weight_buffers"]) - {"CPU_Mapped"}  # on a CPU whose llama.cpp copies Q4_K
    assert (after["host"]["weights_bytes"] < before["host"]["weights_bytes"]) == bool(copies)
    after_codes = [r["code"] for r in after["reasons"]]
    assert "recovered" in after_codes and "host-copies" not in after_codes
    assert after["split_mode"] == before["split_mode"] and after["n_gpu_layers"] == before["n_gpu_layers"]
