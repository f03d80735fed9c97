"""Write docs/guide.md: each command's short guide and the walk-through from plan to cluster, with
the output of real runs pasted in (so the guide shows what the tool really prints).

    python scripts/guide.py
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # fakehub: local stand-ins for the Hub and Ollama's registry


def sh(cmd: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "gpusplit", *cmd], capture_output=True, text=True, env=env)
    shown = "gpusplit " + " ".join(shlex.quote(c) for c in cmd)
    out = result.stdout.rstrip()
    err = result.stderr.rstrip()
    text = f"$ {shown}\n{out}"
    if err:
        text += f"\n{err}"
    return text


def named_models(header: Path, env: dict[str, str]) -> dict[str, str]:
    """hf:// and ollama:// names, against local fake servers holding the 70B header (sparse)."""
    from fakehub import FakeHub, FakeOllama

    hub, ollama = FakeHub(), FakeOllama()
    try:
        repo = "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF"
        files = {f"Meta-Llama-3.1-70B-Instruct-{q}.gguf": header for q in ("Q4_K_M", "Q5_K_M", "Q8_0")}
        hub.add_repo(repo, files)
        ollama.add_model("library/llama3.1:70b", header)
        hub_env = {**env, "HF_ENDPOINT": hub.url, "HF_HOME": str(header.parent / "hf")}
        gpus = ["--gpu", "RTX 4090", "--gpu", "RTX 4090", "--ram", "64GiB"]
        return {
            "hf_plan": sh(["plan", f"hf://{repo}:Q4_K_M", *gpus], hub_env).replace(hub.url, "https://huggingface.co"),
            "hf_ambiguous": sh(["plan", f"hf://{repo}", *gpus], hub_env),
            "ollama_inspect": sh(["inspect", f"ollama://{ollama.netloc}/llama3.1:70b"], env),
        }
    finally:
        hub.close()
        ollama.close()


def main() -> int:
    from accuracy import start_workers

    from gpusplit.synthetic import write_header_only, write_tiny_model

    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    procs, endpoints = start_workers(2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            big = str(write_header_only(Path(tmp) / "Llama-3.1-70B-Q4_K_M.gguf", "llama-3.1-70b", sparse=True))
            mixtral = str(write_header_only(Path(tmp) / "Mixtral-8x7B-Q4_K_M.gguf", "mixtral-8x7b", sparse=True))
            small = str(write_tiny_model(Path(tmp) / "dense-large-f16.gguf", "dense-large-f16"))
            rpc = ",".join(endpoints)
            blocks = {
                "devices": sh(["devices"], env),
                "devices_gpu": sh(["devices", "--gpu", "RTX 4090", "--gpu", "16GiB@448GB/s"], env),
                "inspect": sh(["inspect", big], env),
                "plan_two": sh(["plan", big, "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--ctx", "8192", "--ram", "64GiB"], env),
                "plan_moe": sh(["plan", mixtral, "--gpu", "RTX 4090", "--ram", "64GiB"], env),
                "plan_check": sh(["plan", big, "--gpu", "RTX 4090", "--check", "--json", "--ram", "64GiB"], env).split("\n")[0]
                + "\n...",
                "run": sh(["run", small, "-n", "24"], env),
                "bench": sh(["bench", small, "-p", "128", "-n", "32", "-r", "3"], env),
                "workers": f"$ gpusplit worker --port {endpoints[0].split(':')[1]} &   # on machine A\n"
                f"$ gpusplit worker --port {endpoints[1].split(':')[1]} &   # on machine B",
                "devices_rpc": sh(["devices", "--rpc", rpc], env),
                "plan_rpc": sh(["plan", small, "--rpc", rpc, "--spread"], env),
                "run_rpc": sh(["run", small, "--rpc", rpc, "--spread", "-n", "24"], env),
                "bench_rpc": sh(
                    [
                        "bench",
                        small,
                        "--rpc",
                        rpc,
                        "--mode",
                        "layer",
                        "--mode",
                        "tensor",
                        "--split",
                        "0.5,0.5",
                        "--split",
                        "0.7,0.3",
                        "-p",
                        "64",
                        "-n",
                        "8",
                        "-r",
                        "2",
                    ],
                    env,
                ),
            }
            blocks.update(named_models(Path(big), env))
    finally:
        for p in procs:
            p.terminate()
    template = (ROOT / "scripts" / "guide_template.md").read_text()
    for key, text in blocks.items():
        template = template.replace("{{" + key + "}}", text.replace(tmp, "/models"))
    (ROOT / "docs" / "guide.md").write_text(template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
