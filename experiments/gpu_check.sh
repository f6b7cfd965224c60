#!/usr/bin/env bash
# One GPU check of nasprune, under 8 minutes on one GPU:
#   1. install what is missing (a CUDA build of torch, nasprune with its test dependencies);
#   2. run the device tests (tests/test_devices.py, tests/test_precision.py) on CUDA;
#   3. run experiments/gpu_benchmark.py: training steps/s in fp32, TF32, bf16 and fp16, sub-network
#      evaluations/s slicing vs masking, exported-model latency at 50% MACs vs the full model
#      (eager and torch.compile'd), peak GPU memory;
#   4. run the whole test suite with NASPRUNE_TEST_DEVICE=cuda in the time that is left.
# Without a GPU it says so and exits 0. Usage, from anywhere in a copy of the repository:
#   bash experiments/gpu_check.sh            # PYTHON=python3.11 to choose the interpreter
# The benchmark's numbers also go to $OUT/gpu_benchmark.json ($OUT: default the current folder).
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-460}  # leaves a margin under 8 minutes
status=0

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
has_cuda() { "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
left() { echo $((BUDGET_S - SECONDS)); }

if ! has_cuda; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "gpu_check: this machine has no GPU (no CUDA device, no working nvidia-smi): nothing to check"
        exit 0
    fi
    say "a GPU is present but torch cannot use it: installing torch (PyPI's Linux wheels are CUDA builds)"
    "$PY" -m pip install --quiet --upgrade torch || { echo "gpu_check: could not install torch"; exit 1; }
    has_cuda || { echo "gpu_check: the installed torch still sees no CUDA device"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"

if ! "$PY" -c "import nasprune, syne_tune, transformers, datasets, pytest" 2>/dev/null; then
    say "installing nasprune and its test dependencies"
    "$PY" -m pip install --quiet -e ".[dev]" || { echo "gpu_check: could not install nasprune[dev]"; exit 1; }
fi

export NASPRUNE_TEST_DEVICE=cuda
say "device tests on CUDA"
timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_devices.py tests/test_precision.py || status=1

say "benchmark"
timeout 240 "$PY" experiments/gpu_benchmark.py --device cuda --compile --json "${OUT:-.}/gpu_benchmark.json" || status=1

remaining=$(left)
if [ "$remaining" -gt 30 ]; then
    say "the whole test suite on CUDA, for at most ${remaining}s"
    timeout "$remaining" "$PY" -m pytest -q -p no:cacheprovider tests/
    code=$?
    if [ "$code" -eq 124 ]; then
        echo "gpu_check: the test suite did not finish in ${remaining}s (cut short, not failed)"
    elif [ "$code" -ne 0 ]; then
        status=1
    fi
else
    echo "gpu_check: no time left for the whole test suite"
fi
say "done, status $status"
exit "$status"
