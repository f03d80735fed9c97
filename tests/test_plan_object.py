"""One plan object: what `plan` decides is a Plan; run, bench and tune execute Plans; a saved
`gpusplit.plan/1` document is parsed back into a Plan (its configuration evaluated as given on the
devices it names), and the two agree on everything a run depends on."""

from __future__ import annotations

import pytest

import gpusplit
from gpusplit.base.errors import InputError
from gpusplit.documents.read import plan_from_document
from gpusplit.documents.render import plan_document
from gpusplit.planning.launch import engine_params
from gpusplit.planning.planner import without_extra_buffers

GPUS = ["24GiB", "24GiB"]


def _facts(doc: dict) -> dict:
    """What a run depends on: the load's parameters, where the bytes go and whether they fit, and
    the prediction its timings are compared with."""
    return {
        "engine_params": doc["engine_params"],
        "llama_args": doc["llama_args"],
        "fits": doc["fits"],
        "planned": [
            (d["name"], d["weights_bytes"], d["kv_bytes"], d["compute_bytes"], d["planned_bytes"]) for d in doc["devices"]
        ],
        "host": (doc["host"]["weights_bytes"], doc["host"]["planned_bytes"], doc["host"]["weight_buffers"]),
        "predicted": (doc["predicted"]["tg_tokens_per_s"], doc["predicted"]["pp_tokens_per_s"]),
    }


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the planner's choice: a layer split over both
        {"split": "3,1", "ngl": 40},  # as given
        {"mode": "none", "main_gpu": 1},  # one GPU, the second
        {"mode": "tensor", "flash_attn": True},
        {"ngl": 20, "ctx": 8192, "kv_type": "q8_0", "flash_attn": True, "parallel": 2},  # partly offloaded
        {"ngl": 0, "no_repack": True},  # the CPU's layers, without its weight copies
    ],
)
def test_a_saved_plan_parses_into_the_plan_it_was(header_only_model, settings):
    model = gpusplit.read_model(header_only_model("llama-3.1-8b"))
    devices = gpusplit.detect_devices(gpus=GPUS)
    planned = gpusplit.plan(model, devices, **settings)
    saved = plan_document(planned)
    parsed = plan_from_document(saved, devices)
    assert _facts(plan_document(parsed)) == _facts(saved)
    assert engine_params(parsed) == engine_params(planned)


def test_a_saved_plan_names_its_file_and_devices(header_only_model):
    devices = gpusplit.detect_devices(gpus=GPUS)
    saved = plan_document(gpusplit.plan(header_only_model("llama-3.1-8b"), devices))
    other = dict(saved, engine_params=dict(saved["engine_params"], model_path=str(header_only_model("llama-3.1-70b"))))
    with pytest.raises(InputError, match="made for another file"):
        plan_from_document(other, devices)
    with pytest.raises(InputError, match="the plan is for GPU0, GPU1; the devices here are GPU0"):
        plan_from_document(saved, gpusplit.detect_devices(gpus=["24GiB"]))


def test_no_repack_is_the_same_plan_without_the_hosts_copies(header_only_model):
    """A crash with the CPU's extra buffer types on is run again with --no-repack: the plan it ran
    is the same configuration whose host keeps only the mapped file, and it says why."""
    planned = gpusplit.plan(header_only_model("llama-3.1-8b"), gpusplit.detect_devices(gpus=["8GiB"]), ngl=0)
    again = without_extra_buffers(planned, "llama.cpp crashed (SIGSEGV): ran it again with --no-repack")
    before, after = plan_document(planned), plan_document(again)
    assert after["engine_params"] == {**before["engine_params"], "use_extra_bufts": False}
    assert after["llama_args"] == [*before["llama_args"], "--no-repack"]
    assert set(after["host"]["weight_buffers"]) <= {"CPU_Mapped"}
    copies = set(before["host"]["weight_buffers"]) - {"CPU_Mapped"}  # on a CPU whose llama.cpp copies Q4_K
    assert (after["host"]["weights_bytes"] < before["host"]["weights_bytes"]) == bool(copies)
    assert any(r.startswith("llama.cpp crashed") for r in after["reasons"]) and not any(
        r.startswith("the CPU also keeps ") for r in after["reasons"]
    )
    assert after["split_mode"] == before["split_mode"] and after["n_gpu_layers"] == before["n_gpu_layers"]
