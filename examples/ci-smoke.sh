#!/usr/bin/env bash
# CI smoke job: fail when a model stops fitting the hardware it is meant for.
#
#   examples/ci-smoke.sh MODEL.gguf [INVENTORY.json]
#
# INVENTORY.json is what `gpusplit devices --json` printed on the target server (commit it next to
# this script); without it the job plans for two hypothetical 24 GiB cards. No GPU and no llama.cpp
# engine are needed: `pip install gpusplit` (without the llama extra) installs in seconds.
# Exit codes: 0 fits wholly on the GPUs, 3 does not fit, 2 bad input (the model file, the inventory).
set -euo pipefail

model="${1:?usage: ci-smoke.sh MODEL.gguf [INVENTORY.json]}"
inventory="${2:-}"
ctx="${CTX:-8192}"

if [[ -n "$inventory" ]]; then
  devices=(--devices-file "$inventory")
else
  devices=(--gpu 24GiB --gpu 24GiB)
fi

set +e
gpusplit plan "$model" "${devices[@]}" --ctx "$ctx" --check --json > plan.json
status=$?
set -e

if [[ $status -eq 0 ]]; then
  python3 - <<'PY'
import json
plan = json.load(open("plan.json"))
print(f"fits: {plan['strategy']}, best context {plan['best_ctx']} tokens, score {plan['score']}")
PY
elif [[ $status -eq 3 ]]; then
  echo "the model no longer fits wholly on the GPUs at ctx $ctx (see plan.json)" >&2
fi
exit $status
