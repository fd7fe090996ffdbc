#!/usr/bin/env bash
# The GPU window in one command, from the repository root of a plain copy of the checkout (not installed):
# the GPU-only tests, then bench/gpu_paper.py; every log and result lands in OUT_DIR.
#   bench/gpu_paper.sh OUT_DIR                       the paper run on celeba:local_data/celeba
#   bench/gpu_paper.sh OUT_DIR --smoke --device cpu  the rehearsal (any machine)
# Wheels of dependencies the machine lacks can travel in .whl/ (installed into a temporary folder first).
# $PYTHON picks the interpreter (default python3); $BUDGET_S the seconds after which no experiment starts.
set -uo pipefail
out=${1:?usage: bench/gpu_paper.sh OUT_DIR [gpu_paper.py options]}
shift
py=${PYTHON:-python3}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
[ $# -gt 0 ] || set -- --data celeba:local_data/celeba --budget-s "${BUDGET_S:-380}"
# only the test files that hold GPU tests: the others may import optional packages the machine lacks
mapfile -t gpu_tests < <(grep -l "mark.gpu" tests/*.py)
"$py" -m pytest -q -m gpu -p no:cacheprovider "${gpu_tests[@]}" 2>&1 | tee "$out/gpu_tests.log"
"$py" bench/gpu_paper.py --out "$out" "$@" 2>&1 | tee "$out/gpu_paper.log"
