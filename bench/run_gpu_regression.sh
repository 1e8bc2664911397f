#!/usr/bin/env bash
# The regression acceptance timings on one GPU (issue: H100, 80 GB), one command each.
# Usage: bench/run_gpu_regression.sh [small|B|C|all]   (results in results/bench/*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-.venv/bin/python}
mkdir -p results/bench
which=${1:-all}

if [[ $which == small || $which == all ]]; then
  # Setup A's size: every solver and scikit-learn (least squares target: < 2 s)
  $PY bench/regression.py --p 2304 --m 50000 --n 10000 --device cuda \
    --json results/bench/regression_p2304_m50000_n10000.json
fi
if [[ $which == B || $which == all ]]; then
  # Setup B's size: least squares (target: < 5 min); scikit-learn cannot hold X (17 GiB) and Y
  $PY bench/regression.py --p 22720 --m 100000 --n 50000 --device cuda \
    --solvers least_squares --no-sklearn --test-rows 1000 \
    --json results/bench/regression_p22720_m100000_n50000.json
fi
if [[ $which == C || $which == all ]]; then
  # Setup C's size: least squares must fit in GPU memory (fp32 Gram 27.5 GB) and finish
  $PY bench/regression.py --p 82944 --m 200000 --n 5000 --device cuda \
    --solvers least_squares --no-sklearn --test-rows 1000 --batch-rows 4096 \
    --json results/bench/regression_p82944_m200000_n5000.json
fi
