"""`gpusplit tune`: seeded by the plan, bounded by the budget, stopped by Ctrl-C with the best so
far, failing trials recorded and skipped, resumable from its JSONL, the winner a plan document."""

from __future__ import annotations

import json

import pytest

import gpusplit
from gpusplit.base.reasons import codes
from gpusplit.documents.results import read_trials, trial_record
from gpusplit.engine import EngineError
from gpusplit.jobs.tune import FINAL_ROUNDS, FINALISTS, MIN_TRIAL_S, key, seeds, tune
from gpusplit.planning.request import Request

CTX = Request(n_ctx=256)


@pytest.fixture
def cpu_only(tiny_model):
    """The host alone, described without the engine; tests that measure pass a fake `measure`."""
    from gpusplit.devices.inventory import Inventory, host_device

    return gpusplit.read_model(tiny_model("dense-f16")), Inventory(devices=[], host=host_device())


def fake_measure(speeds=None, fail=None, interrupt_at=None, delay=0.0, clock=None):
    calls = []
    limits = []

    def measure(plan, best_tg, limit_s):
        import time

        config = plan.request
        calls.append(config)
        limits.append(limit_s)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        if fail is not None and fail(config):
            raise EngineError("llama.cpp could not create the context: made up for the test")
        if clock is not None:
            clock.now += delay  # virtual time: the test holds on a machine of any speed
        else:
            time.sleep(delay)
        tg = (speeds or {}).get(key(config), 100.0 + 10 * (config.n_threads or 0) + (5 if config.flash_attn else 0))
        return tg, tg * 10, None

    measure.calls = calls
    measure.limits = limits
    return measure


def test_search_finds_the_fastest_neighbour(cpu_only):
    model, inventory = cpu_only
    measure = fake_measure()
    result = tune(model, inventory, CTX, budget_s=60, measure=measure)
    assert result.stopped == "done" and result.measured
    # The fake rewards flash attention and more threads: the winner has both.
    assert result.best.request.flash_attn is True and result.best.request.n_threads == max(
        c.n_threads or 0 for c in measure.calls
    )
    assert len({t.key for t in result.trials}) == len(result.trials)  # nothing measured twice
    assert result.plan.best.settings.flash_attn is True  # the plan is the winner's


def test_budget_stops_with_the_best_so_far(cpu_only, monkeypatch):
    """On a clock that only the trials move (planning takes no time on it, however slow the
    machine): 0.2 s trials in a 0.5 s budget."""
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr("gpusplit.jobs.tune.time", SimpleNamespace(monotonic=lambda: clock.now))
    model, inventory = cpu_only
    measure = fake_measure(delay=0.2, clock=clock)
    result = tune(model, inventory, CTX, budget_s=0.5, measure=measure)
    assert result.stopped == "budget"
    assert 1 <= len(result.trials) <= 3 and result.best is not None and result.best.score  # 0.2 s each, 0.5 s in all
    # each trial may run to the end of the budget, but never less than MIN_TRIAL_S
    assert measure.limits and all(limit == MIN_TRIAL_S for limit in measure.limits)


def test_a_trial_gets_what_is_left_of_the_budget(cpu_only):
    model, inventory = cpu_only
    measure = fake_measure(delay=0.05)
    tune(model, inventory, CTX, budget_s=100, measure=measure)
    assert len(measure.limits) >= 2
    assert 99 < measure.limits[0] <= 100
    assert all(a >= b for a, b in zip(measure.limits, measure.limits[1:]))  # shrinking as time passes


def test_ctrl_c_stops_with_the_best_so_far(cpu_only):
    model, inventory = cpu_only
    result = tune(model, inventory, CTX, budget_s=60, measure=fake_measure(interrupt_at=3))
    assert result.stopped == "interrupted" and len(result.trials) == 2 and result.best is not None


def test_a_failing_trial_is_recorded_and_skipped(cpu_only):
    model, inventory = cpu_only
    result = tune(model, inventory, CTX, budget_s=60, measure=fake_measure(fail=lambda c: c.flash_attn))
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and all("made up for the test" in t.error for t in failed)
    assert result.best.request.flash_attn is False and len(result.trials) > len(failed) + 1


def test_resume_does_not_measure_again(cpu_only, tmp_path):
    model, inventory = cpu_only
    log = tmp_path / "trials.jsonl"
    first = tune(model, inventory, CTX, budget_s=60, measure=fake_measure(interrupt_at=4),
                 on_trial=lambda t: log.open("a").write(json.dumps(trial_record(t)) + "\n"))  # fmt: skip
    assert first.stopped == "interrupted" and len(read_trials(log)) == 3
    measure = fake_measure()
    again = tune(model, inventory, CTX, budget_s=60, previous=read_trials(log), measure=measure)
    logged = {t.key for t in read_trials(log)}
    searched = measure.calls[: len(measure.calls) - FINAL_ROUNDS * FINALISTS]  # then the finalists, measured again
    assert not {key(c) for c in searched} & logged
    assert len(again.trials) == 3 + len(searched) and again.stopped == "done"


def noisy_measure(readings):
    """A fake whose readings per configuration come from `readings[key]` in turn (the last repeats);
    anything else reads 50 t/s."""
    calls = []

    def measure(plan, best_tg, limit_s):
        name = key(plan.request)
        calls.append(name)
        values = readings.get(name, [50.0])
        tg = values[min(sum(1 for k in calls if k == name) - 1, len(values) - 1)]
        return tg, tg * 10, None

    measure.calls = calls
    return measure


def test_the_best_few_are_measured_again_and_a_lead_inside_the_noise_goes_to_the_plan(cpu_only):
    """Two configurations as fast as this machine can tell (the tuned one read 112 once, then 96 and
    101; the plan's own choice 100, 110, 95): the plan's own choice wins, and the margin and the
    spread are reported."""
    model, inventory = cpu_only
    from gpusplit.devices.cpu import default_threads, usable_cpus

    if usable_cpus() < 2:
        pytest.skip("one CPU: tune has no thread count to move to")
    planned = seeds(gpusplit.plan(model, inventory, CTX))[0]
    tuned = planned.with_(n_threads=2 if default_threads() == 1 else 1)  # a thread count the plan does not run
    measure = noisy_measure({key(planned): [100.0, 110.0, 95.0], key(tuned): [112.0, 96.0, 101.0]})
    result = tune(model, inventory, CTX, budget_s=60, measure=measure)
    assert measure.calls.count(key(planned)) == 1 + FINAL_ROUNDS and measure.calls.count(key(tuned)) == 1 + FINAL_ROUNDS
    assert result.best.key == key(planned) and result.chosen.startswith("closest to the plan")
    assert result.runner_up is not None and 0 <= result.margin_pct <= result.spread_pct
    assert sorted(result.best.samples) == [95.0, 100.0, 110.0] and result.best.score == 100.0  # their median
    assert "within-noise" in codes(result.notes)


def test_a_clear_winner_stays_the_winner(cpu_only, tmp_path):
    model, inventory = cpu_only
    planned = seeds(gpusplit.plan(model, inventory, CTX))[0]
    tuned = planned.with_(flash_attn=not planned.flash_attn)
    measure = noisy_measure({key(planned): [100.0, 104.0, 98.0], key(tuned): [150.0, 146.0, 153.0]})
    log = tmp_path / "trials.jsonl"
    result = tune(model, inventory, CTX, budget_s=60, measure=measure,
                  on_trial=lambda t: log.open("a").write(json.dumps(trial_record(t)) + "\n"))  # fmt: skip
    assert result.best.key == key(tuned) and result.chosen == "fastest"
    assert result.margin_pct == pytest.approx(100 * (150 - 100) / 100, abs=0.1) and result.spread_pct < 10
    # the final rounds are in the JSONL too, and a resumed tune reads them into their trial's samples
    again = {t.key: t for t in read_trials(log)}
    assert sorted(again[key(tuned)].samples) == [146.0, 150.0, 153.0]


def test_hypothetical_devices_are_ranked_by_prediction(cli, tiny_model, tmp_path):
    log = tmp_path / "t.jsonl"
    result = cli("tune", "--json", str(tiny_model("dense-f16")), "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--trials", str(log),
                 "--output", str(tmp_path / "tuned.json"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["measured"] is False and [n["code"] for n in doc["notes"]] == ["prediction-only"]
    assert all(t["measured_tg"] is None for t in doc["trials"]) and doc["best"]["score"] == max(
        t["score"] for t in doc["trials"] if t["score"]
    )
    assert len(read_trials(log)) == len(doc["trials"])
    assert json.loads((tmp_path / "tuned.json").read_text()) == doc["plan"]
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
    from gpusplit.documents.schemas import schemas

    jsonschema.validate(doc, schemas()["gpusplit.tune/3"])


def test_seeds_are_the_plans_fitting_candidates(tiny_model):
    plan = gpusplit.plan(tiny_model("dense-f16"), gpusplit.detect_devices(gpus=["RTX 4090", "RTX 3090"]), CTX)
    configs = seeds(plan)
    assert configs and all(isinstance(c, Request) and c.n_ctx == 256 for c in configs)
    assert len(configs) == sum(1 for c in [plan.best, *plan.alternatives] if c.fits)


def test_tune_for_real_then_run_its_plan(cli, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    tuned = tmp_path / "tuned.json"
    result = cli("tune", "--json", "--budget", "15s", "--output", str(tuned))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["measured"] and doc["best"]["measured_tg"] > 0
    run = cli("run", "--plan", str(tuned), "-n", "4", "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["plan"]["llama_args"] == doc["plan"]["llama_args"]
    bench = cli("bench", "--plan", str(tuned), "-p", "32", "-n", "8", "-r", "1", "-o", "json")
    assert bench.exit_code == 0, bench.stderr
    records = json.loads(bench.stdout)
    assert {r["test"] for r in records} == {"pp32", "tg8"} and all(r["status"] == "ok" for r in records)
    assert records[0]["config"]["fa"] == doc["plan"]["settings"]["flash_attn"]  # run as planned, not planned again
    clash = cli("bench", "--plan", str(tuned), "--mode", "layer")
    assert clash.exit_code == 2 and "--plan fixes the configuration" in clash.stderr


def test_neighbours_move_every_knob():
    from gpusplit.jobs.tune import neighbours

    best = Request(split_mode="layer", tensor_split=(0.5, 0.5), n_gpu_layers=10, n_cpu_moe=3, n_ubatch=512, flash_attn=False)
    moves = list(neighbours(best, n_devices=2, n_layer=32, cores=4))
    splits = {m.tensor_split for m in moves if m.tensor_split != best.tensor_split}
    assert splits >= {(0.3, 0.7), (0.7, 0.3), (0.4, 0.6), (0.45, 0.55)}
    assert {m.n_gpu_layers for m in moves} >= {9, 11} and {m.n_cpu_moe for m in moves} >= {2, 4}
    assert any(m.flash_attn for m in moves) and {m.n_ubatch for m in moves} >= {256, 1024}
    assert {m.n_threads for m in moves} >= {1, 2, 3} and 4 not in {m.n_threads for m in moves}  # 4 = all cores = unset
    # GPUSPLIT_THREADS=1 (or a taskset of one CPU among four): unset means 1, so 4 is a move and 1 is not
    threads = {m.n_threads for m in neighbours(best, n_devices=2, n_layer=32, cores=4, default_threads=1)}
    assert threads >= {2, 3, 4} and 1 not in threads


def test_one_load_measures_both_and_skips_the_prompt_when_clearly_slower(tiny_model):
    """A trial loads the model once: tg, then pp in the same engine child unless generation fell
    below the threshold (then pp is never run)."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.devices.inventory import Inventory, host_device
    from gpusplit.jobs.runner import bench_config
    from gpusplit.planning.launch import engine_params

    plan = gpusplit.plan(str(tiny_model("dense-f16")), Inventory(devices=[], host=host_device()), CTX)
    params = engine_params(plan).with_(n_threads=1)
    tests = [{"name": "tg", "kind": "tg", "n": 8, "depth": 0}, {"name": "pp", "kind": "pp", "n": 32, "depth": 0}]
    both = bench_config(plan, params, tests, 1, stop_if={"test": "tg", "below_ts": 0.001})
    assert set(both.samples) == {"tg", "pp"}
    only_tg = bench_config(plan, params, tests, 1, stop_if={"test": "tg", "below_ts": 1e12})
    assert set(only_tg.samples) == {"tg"}


def test_without_the_engine_tune_of_real_devices_says_so_once(cli, tiny_model, monkeypatch):
    """Real devices are measured, in the engine: without it the search would fail every trial; it
    says what is missing instead, before any trial (hypothetical cards are still ranked)."""
    monkeypatch.setenv("GPUSPLIT_NO_ENGINE", "1")
    result = cli("tune", str(tiny_model("dense-f16")), "--budget", "5s")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "engine" in line and "not installed" in line and "pip install" in line
    assert cli("tune", str(tiny_model("dense-f16")), "--gpu", "8GiB", "--budget", "5s").exit_code == 0


def test_users_tune_their_generation_together_each_above_the_floor(cpu_only, monkeypatch):
    """tune --users N --min-user-tps F (issue 38 item 4): each trial measures N sequences decoded
    together; a configuration whose users get less than F each is not a winner, and where none
    reaches F the result says so (code user-floor) and keeps the plan's own choice."""
    model, inventory = cpu_only
    four = Request(n_ctx=1024, users=4)
    # the fake's generation: 100 + 10 a thread + 5 with flash attention, for all four together
    result = tune(model, inventory, four, budget_s=60, measure=fake_measure(), min_user_tps=28)
    assert all(t.request.users == 4 for t in result.trials) and result.plan.settings.n_parallel == 4
    under = [t for t in result.trials if t.status == "skipped"]
    assert under and all((t.measured_tg or 0) / 4 < 28 and "under the floor of 28" in (t.error or "") for t in under)
    assert result.best is not None and result.best.measured_tg / 4 >= 28
    none = tune(model, inventory, four, budget_s=60, measure=fake_measure(), min_user_tps=1000)
    assert none.best is None and "user-floor" in codes(none.notes)
    with pytest.raises(gpusplit.InputError, match="min_user_tps"):
        tune(model, inventory, CTX, budget_s=60, measure=fake_measure(), min_user_tps=10)  # one user: no floor to keep
    with pytest.raises(gpusplit.InputError, match="objective tg"):
        tune(model, inventory, four, objective="pp", budget_s=60, measure=fake_measure())


def test_a_users_trial_decodes_all_of_them_together(tiny_model, monkeypatch):
    from gpusplit.jobs import tune as tune_job
    from gpusplit.jobs.runner import BenchOutcome

    seen = []

    def bench_config(plan, params, tests, repetitions, **kwargs):
        seen.append((params.n_seq_max, tests))
        return BenchOutcome({"tg": [400.0, 410.0, 405.0]}, {}, {})

    monkeypatch.setattr(tune_job, "bench_config", bench_config)
    plan = gpusplit.plan(tiny_model("dense-f16"), None, Request(n_ctx=1024, users=4))
    measured = tune_job.measure_config(plan, best_tg=None)
    ((n_seq_max, tests),) = seen
    assert n_seq_max == 4 and tests[0]["parallel"] == 4 and measured.tg == 405.0
