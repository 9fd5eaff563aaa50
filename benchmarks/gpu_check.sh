#!/usr/bin/env bash
# The one GPU-machine command (see benchmarks/README.md): install the carried wheels, run the check into $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT_DIR="${OUT:-out/gpu_check}"
python3 benchmarks/gpu_check.py --out "$OUT_DIR" "$@" 2>&1 | tee -a "$OUT_DIR.stdout.log"
exit "${PIPESTATUS[0]}"
