#!/usr/bin/env bash
# The GPU benchmark table of the ablation engine: every setup on CUDA, eager and compiled.
#
#     bash bench/run_gpu.sh [extra bench/ablation.py arguments]     (about 10 minutes on an H100)
#
# Writes one block per (setup, compile) to stdout and to results/bench/ablation_gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p results/bench
out=results/bench/ablation_gpu.txt
: > "$out"
for setup in cifar_miniresnet imagenet_resnet50 imagenet_vit gpt2 mini_digits; do
    for compile in "" "--compile"; do
        "$PYTHON" bench/ablation.py --setup "$setup" --device cuda $compile "$@" 2>&1 | tee -a "$out"
        echo | tee -a "$out"
    done
done
