"""Serving several users (issue 38): what N users decoding together get from the plan's server,
and from replicas, one server per device that holds the model alone, the users spread over them.

A server with N busy slots decodes one token of each per step (parallel_tokens_per_s); a user
arriving meanwhile waits for its prompt to go through in a batch beside the others' tokens (its
time to first token). Replicas share nothing but the host: each is its own llama-server with its
own device and N/k slots, behind a balancer that deals users round robin. Pure functions over a
Plan: no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .launch import engine_params, llama_server_args
from .memory import Placement
from .planner import Candidate, evaluate, prediction_at, users_depth
from .predict import parallel_tokens_per_s, prompt_tokens_per_s
from .servers import Server, Serving

if TYPE_CHECKING:
    from .planner import Plan

FIRST_PORT = 8080


def serving(plan: Plan) -> Serving | None:
    """The plan's serving figures where it was asked for several users (Request.users)."""
    users = plan.request.users or 1
    if users <= 1:
        return None
    best = plan.best
    depth = users_depth(best.settings)
    prompt = max(min(best.settings.n_ubatch, depth), 1)
    names = tuple(m.name for m in best.memory.devices if m.planned_bytes) or ("CPU",)
    server = _server(plan, best, users, users, prompt, names, (*llama_server_args(plan), "--port", str(FIRST_PORT)))
    return Serving(users, depth, prompt, server, _replicas(plan, users, prompt))


def _server(
    plan: Plan, c: Candidate, slots: int, users: int, prompt: int, devices: tuple[str, ...], command: tuple[str, ...]
) -> Server:
    deep = prediction_at(plan.model, plan.devices, plan.host, plan.inputs, c, users_depth(c.settings))
    together = parallel_tokens_per_s(deep, users)
    # the newcomer's prompt goes in one batch beside the others' tokens (continuous batching)
    batch = prompt + users - 1
    batch_tps = prompt_tokens_per_s(
        deep.batch_fixed_s, deep.batch_token_s, deep.tg_tokens_per_s, batch, min(c.settings.n_ubatch, c.settings.n_ctx_total)
    )
    return Server(
        devices, slots, users, together, together / users if together else None, batch / batch_tps if batch_tps else None, command
    )


def _replicas(plan: Plan, users: int, prompt: int) -> tuple[Server, ...]:
    """One server per device (a GPU, or an RPC worker) that holds the model alone with its share of
    the slots and the same context per slot; none where fewer than two do."""
    settings = plan.best.settings
    eligible = [i for i, d in enumerate(plan.devices) if d.is_gpu or d.endpoint]
    k = min(len(eligible), users)
    if k < 2:
        return ()
    slots = -(-users // k)
    own = replace(settings, n_parallel=slots, n_ctx=settings.n_ctx_seq * slots)  # the same context a slot
    fitted: list[tuple[int, Candidate]] = []
    for i in eligible:
        c = evaluate(
            plan.model,
            plan.devices,
            plan.host,
            replace(plan.inputs, settings=own),
            Placement("none", -1, (), i),
            "single-gpu",
            own,
        )
        if c.fits:
            fitted.append((i, c))
    k = min(len(fitted), users)
    if k < 2:
        return ()
    servers = []
    for rank, (i, c) in enumerate(fitted[:k]):
        mine = users // k + (1 if rank < users % k else 0)  # round robin
        servers.append(
            _server(plan, c, c.settings.n_parallel, mine, prompt, (plan.devices[i].name,), _replica_command(plan, c, i, rank))
        )
    return tuple(servers)


def _replica_command(plan: Plan, c: Candidate, index: int, rank: int) -> tuple[str, ...]:
    """llama-server on device `index` alone: the replica's own load (engine_params), with only its
    worker's endpoint, or a GPU chosen by --device; either is then the process's first device."""
    device = plan.devices[index]
    params = engine_params(plan, c).with_(rpc=(device.endpoint,) if device.endpoint else (), main_gpu=0)
    select = [] if device.endpoint else ["--device", device.name]
    return (*params.cli_flags(), *select, "--port", str(FIRST_PORT + 1 + rank))
