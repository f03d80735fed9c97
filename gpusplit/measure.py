"""`plan --measure`: replace the estimated compute buffers with llama.cpp's own dry run.

The dry run (`no_alloc`) runs in an engine child process with exactly the plan's parameters
(llama-cpp-facts.md: a dry run with other context parameters reports other buffers).
"""

from __future__ import annotations

from .planner import Plan


def rpc_buffer_names(plan: Plan) -> dict[str, str]:
    """'host:port#k' (the k-th device of that worker) -> the model's device name (RPCn)."""
    from .engine.logparse import rpc_buffer_map

    return rpc_buffer_map([(d.name, d.endpoint) for d in plan.devices])


def measure_compute(plan: Plan, timeout: float = 300.0) -> dict[str, int]:
    """Run the dry run for the plan's best candidate; update its compute bytes and fit in place."""
    from .engine.child import run_task
    from .engine.logparse import parse_buffers
    from .report import engine_params

    params = engine_params(plan)
    _, log = run_task("dryrun", {"params": params.as_dict()}, timeout=timeout)
    report = parse_buffers(log, rpc_buffer_names(plan))
    measured = {name: parts.get("compute", 0) for name, parts in report.by_device.items()}
    best = plan.best
    for i, mem in enumerate(best.memory.devices):
        if mem.name in measured:
            mem.compute_bytes = measured[mem.name]
        best.headroom[i] = plan.devices[i].free_bytes - plan.reserves[i] - mem.planned_bytes
    if "CPU" in measured:
        best.memory.host.compute_bytes = measured["CPU"]
    best.host_headroom = plan.host.free_bytes - best.memory.host.planned_bytes
    used = [i for i, m in enumerate(best.memory.devices) if m.planned_bytes]
    best.fits = all(best.headroom[i] >= 0 for i in used) and best.host_headroom >= 0
    return measured
