"""plan --users N (issue 38 items 1 and 2): N users decoding together on the plan's server, and on
replicas (one llama-server per device that holds the model alone), weighed against each other."""

from __future__ import annotations

import json

import pytest


def _plan(cli, model, *args):
    result = cli("plan", str(model), *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_eight_users_on_two_gpus_get_one_server_and_two_replicas_weighed(cli, header_only_model):
    """The issue's case: a 7-8B Q4_K_M model on two RTX 4090s for eight users. One server holds it
    on one GPU and leaves the other idle; two replicas of four slots each use both."""
    doc = _plan(cli, header_only_model("llama-3.1-8b"), "--gpu", "2xRTX 4090", "--users", "8", "-c", "32768")
    serving = doc["serving"]
    assert doc["settings"]["n_parallel"] == 8 and doc["request"]["users"] == 8  # eight slots planned
    assert serving["users"] == 8 and serving["depth"] == 32768 // 8 // 2  # half of each user's slot
    server = serving["server"]
    assert server["users"] == server["slots"] == 8
    assert server["per_user_tokens_per_s"] == pytest.approx(server["tokens_per_s"] / 8, rel=1e-3)
    # together more than one stream, each less (the step reads the weights once for all of them)
    assert server["tokens_per_s"] > doc["predicted"]["tg_tokens_per_s"] > server["per_user_tokens_per_s"]
    replicas = serving["replicas"]
    assert [r["devices"] for r in replicas] == [["GPU0"], ["GPU1"]]
    assert [(r["slots"], r["users"]) for r in replicas] == [(4, 4), (4, 4)]
    assert serving["replicas_tokens_per_s"] == pytest.approx(sum(r["tokens_per_s"] for r in replicas), rel=1e-3)
    faster, slower = sorted([serving["replicas_tokens_per_s"], server["tokens_per_s"]], reverse=True)
    assert serving["winner"] == ("replicas" if faster == serving["replicas_tokens_per_s"] else "one-server")
    assert serving["ratio"] == pytest.approx(faster / slower, rel=1e-3)
    # each replica its own server: its device, its slots, the same context a slot, its own port
    for rank, replica in enumerate(replicas):
        command = replica["command"]
        assert command[command.index("--device") + 1] == f"GPU{rank}"
        assert command[command.index("-np") + 1] == "4" and command[command.index("-c") + 1] == str(32768 // 2)
        assert command[command.index("--port") + 1] == str(8081 + rank)


def test_a_model_no_device_holds_alone_has_no_replicas(cli, header_only_model):
    doc = _plan(cli, header_only_model("llama-3.1-70b"), "--gpu", "2xRTX 4090", "--users", "4", "-c", "8192")
    assert doc["serving"]["replicas"] == [] and doc["serving"]["winner"] == "one-server"
    assert doc["serving"]["ratio"] is None


def test_one_user_is_the_single_stream_plan(cli, header_only_model):
    doc = _plan(cli, header_only_model("llama-3.1-8b"), "--gpu", "2xRTX 4090")
    assert "serving" not in doc and doc["settings"]["n_parallel"] == 1


def test_the_table_says_which_serves_them_faster_and_prints_each_replicas_command(cli, header_only_model):
    result = cli("plan", str(header_only_model("llama-3.1-8b")), "--gpu", "2xRTX 4090", "--users", "8", "-c", "32768")
    assert result.exit_code == 0, result.stderr
    assert "serving 8 users" in result.stdout
    assert result.stdout.count("llama-server -m") == 3  # the plan's server and both replicas
    assert "--device GPU1 --port 8082" in result.stdout
