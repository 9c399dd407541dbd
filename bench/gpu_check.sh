#!/usr/bin/env bash
# The one GPU check (issue #15, docs/performance.md): run it once in a session that is lent a
# device machine, from the repository root, e.g. with the device tool:
#     run(command="bash bench/gpu_check.sh", timeout_s=600)
# It needs only the device image's python3 (torch, PyYAML, safetensors, pyarrow), ends in under
# 10 minutes, and writes its tables under $OUT (gpu_check.txt, gpu_check.json, nvidia_smi.txt).
# Copy the numbers into docs/performance.md with the date, this command and the hardware.
# On a CPU machine, `bash bench/gpu_check.sh --smoke` checks the script itself.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PY:-python3}"
[ -x .venv/bin/python ] && [ "${1:-}" = "--smoke" ] && PY=.venv/bin/python
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia_smi.txt" 2>&1
timeout 540 "$PY" bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.txt"
exit "${PIPESTATUS[0]}"
