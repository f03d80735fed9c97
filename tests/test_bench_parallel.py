"""`bench --parallel N` (issue 38 item 3): N sequences decoded together, as llama-server's busy
slots and llama-batched-bench: each after its own prompt, every step one batch holding a token of
each; its rows give all of their tokens per second and each one's share."""

from __future__ import annotations

import json

import pytest

from gpusplit.base.errors import InputError
from gpusplit.jobs.matrix import Config
from gpusplit.jobs.matrix import Tests as BenchTests
from gpusplit.planning.predict import Prediction, parallel_tokens_per_s
from gpusplit.planning.request import Request


def test_parallel_generation_tests_are_named_and_sized_for_their_sequences():
    tests = BenchTests(n_prompt=(64,), n_gen=(16,), depths=(0, 32), parallel=(1, 4)).tests()
    assert [t.name for t in tests] == ["pp64", "tg16", "tg16 x4", "pp64 @ d32", "tg16 @ d32", "tg16 x4 @ d32"]
    four = tests[-1]
    assert four.as_dict() == {"name": "tg16 x4 @ d32", "kind": "tg", "n": 16, "depth": 32, "parallel": 4}
    assert "parallel" not in tests[1].as_dict()  # one sequence: the engine's plain generation test
    # each sequence gets its own share of the cache (not unified): the context holds four of them
    request = Config("auto", "auto", None, None, "f16", False).request(Request(), needed_ctx=48, slots=4)
    assert (request.n_parallel, request.n_ctx) == (4, 4 * 256)
    with pytest.raises(InputError, match="parallel"):
        BenchTests(parallel=(0,)).tests()


def _prediction(tg: float, kv_s: float, weights_s: float, batch_token_s: float) -> Prediction:
    parts = {"devices": {"CPU": {"layers": 0.0, "rows": 0.0, "weights": weights_s, "output": 0.0, "kv": kv_s}}}
    return Prediction(tg, None, 0, 1 / tg, "CPU", (), batch_token_s=batch_token_s, parts=parts)  # type: ignore[arg-type]


def test_sequences_decoded_together_share_the_weights_read_and_pay_their_own_caches():
    # A memory-bound step (10 ms: 8 of them the weights, 1 the cache, compute 0.5 ms a token):
    memory_bound = _prediction(100.0, kv_s=0.001, weights_s=0.008, batch_token_s=0.0005)
    assert parallel_tokens_per_s(memory_bound, 1) == 100.0
    # four sequences: the weights once, three more caches, compute (2 ms) hidden under the read
    assert parallel_tokens_per_s(memory_bound, 4) == pytest.approx(4 / (0.010 + 3 * 0.001))
    # 32: their compute (16 ms) outgrows the 8 ms read and shows
    assert parallel_tokens_per_s(memory_bound, 32) == pytest.approx(32 / (0.010 + 31 * 0.001 + (0.016 - 0.008)))
    # each user's share falls as the step grows; all of them together rise
    speeds = [parallel_tokens_per_s(memory_bound, n) or 0.0 for n in (1, 2, 4, 8)]
    assert speeds == sorted(speeds) and speeds[3] / 8 < speeds[0]
    assert parallel_tokens_per_s(Prediction(None, None, 0, None, "CPU", ()), 4) is None  # no generation predicted


llama = pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")


@pytest.mark.isolated
def test_each_step_decodes_one_token_of_every_sequence(tiny_model, monkeypatch):
    """The engine's parallel test: every sequence's prompt first (untimed, kept between repetitions
    as a depth test's context is), then each step one batch with one token of each sequence, at
    the next position of each, all asking for logits, each step waiting for the last."""
    import llama_cpp

    from gpusplit.engine import tasks
    from gpusplit.engine.params import EngineParams
    from gpusplit.engine.tasks import task_bench

    batches = []
    real_decode = llama_cpp.llama_decode

    def decode(ctx, batch):
        n = batch.n_tokens
        batches.append(
            (
                n,
                sorted({batch.seq_id[i][0] for i in range(n)}),
                sorted({batch.pos[i] for i in range(n)}),
                sum(batch.logits[i] != 0 for i in range(n)),
            )
        )
        return real_decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    monkeypatch.setattr(tasks, "WARM_UP_S", 60.0)
    # three streams of exactly the cells the test needs: a sequence spilling into another's fails
    params = EngineParams(model_path=str(tiny_model("dense-f16")), n_ctx=3 * 256, n_seq_max=3, n_threads=1, no_repack=True)
    test = {"name": "tg4 x3 @ d8", "kind": "tg", "n": 4, "depth": 8, "parallel": 3}
    result = task_bench({"params": params.as_dict(), "tests": [test], "repetitions": 2}, lambda event: None)
    assert len(result["results"][0]["samples_ts"]) == 2
    prompts = [(8, [seq], list(range(8)), 0) for seq in range(3)]
    steps = [(3, [0, 1, 2], [8 + step], 3) for step in range(4)]
    assert batches == prompts + steps * 3  # prompts once; a warm-up and two repetitions of 4 steps


def test_bench_parallel_rows_give_all_sequences_and_each_ones_share(cli, tiny_model):
    result = cli(
        "bench", str(tiny_model("dense-f16")), "-p", "0", "-n", "8", "-d", "16", "-np", "1", "-np", "2", "-r", "2", "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    rows = {r["test"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"tg8 @ d16", "tg8 x2 @ d16"}
    one, two = rows["tg8 @ d16"], rows["tg8 x2 @ d16"]
    assert (one["parallel"], two["parallel"]) == (1, 2) and one["per_user_ts"] is None
    assert two["per_user_ts"] == pytest.approx(two["mean_ts"] / 2, abs=1e-3)
    # one configuration for both: two slots, each its own 256 cells
    assert two["engine_params"]["n_seq_max"] == 2 and two["engine_params"]["n_ctx"] == 512
    assert two["predicted_ts"] > one["predicted_ts"] > two["predicted_ts"] / 2  # together more, each less


def test_a_saved_plan_with_too_few_slots_is_a_failed_row_that_says_so(cli, tiny_model, tmp_path):
    saved = tmp_path / "plan.json"
    planned = cli("plan", str(tiny_model("dense-f16")), "-c", "512", "--json")
    assert planned.exit_code == 0, planned.stderr
    saved.write_text(planned.stdout)
    result = cli(
        "bench", str(tiny_model("dense-f16")), "--plan", str(saved), "-p", "0", "-n", "4", "-np", "2", "-r", "1", "-o", "json"
    )
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "failed" and "--parallel 2" in row["error"]
