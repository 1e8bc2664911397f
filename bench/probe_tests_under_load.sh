#!/usr/bin/env bash
# The CPU batch-probe tests, N times (default 20) beside a CPU hog that keeps every core
# busy: their verdict must not depend on the machine's load (they run on an injected
# clock). Prints the pass count.   bash bench/probe_tests_under_load.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
hogs=()
for _ in $(seq "$(nproc)"); do
    .venv/bin/python -c "while True: pass" &
    hogs+=($!)
done
log=$(mktemp)
trap 'kill "${hogs[@]}" 2>/dev/null; rm -f "$log"' EXIT
passed=0
for i in $(seq "$runs"); do
    if .venv/bin/pytest -q -p no:cacheprovider tests/test_ablation_engine.py -k "cpu_auto_batch" >"$log" 2>&1; then
        passed=$((passed + 1))
    else
        tail -5 "$log"
    fi
    echo "run $i: $passed passed so far (load $(cut -d' ' -f1 /proc/loadavg))"
done
echo "batch-probe tests beside $(nproc) CPU hogs: $passed of $runs runs passed"
[ "$passed" -eq "$runs" ]
