#!/usr/bin/env bash
# The GPU path end to end, and every GPU figure, in one command with no network.
#
#   benchmarks/gpu_acceptance.sh [--cpu] [--install] [--out DIR]
#
# On a GPU node (one H100/H200: about 8 minutes) it
#   1. prints device, driver, torch, CUDA and Python versions;
#   2. runs benchmarks/train_speed.py's full comparison (tutorial loop, ours one seed, ours
#      8 stacked, compute floor) on both workloads;
#   3. runs the stacked-vs-single checks of tests/test_batched.py on the GPU;
#   4. runs the default study (shipped datasets, >= 200 runs) on the GPU with snakemake
#      --resources gpu=2, fit included, and checks that the run table is complete and every
#      record says cuda, its precision and its seed batch;
#   5. measures per-job start-up share on that study (benchmarks/startup_share.py);
#   6. times one epoch of each network of config/gpu.yaml on CIFAR-shaped tensors, stacked as
#      the study stacks them, and estimates the GPU-hours of the whole study;
#   7. writes every figure with device and versions to DIR/gpu_acceptance.json and .md
#      (default DIR: benchmarks/results/gpu_acceptance; one copy of it brings all back).
#
# --cpu: the same steps on the CPU at small sizes (the tiny test study, quick benchmarks,
#        one equivalence check, one network timed on 64 images), so the script cannot rot while no GPU is around
#        (tests/test_gpu_acceptance.py runs it).
# --install: first install the project's other dependencies offline from wheelhouse/ (made
#        by `make wheelhouse`) into .venv-node, a venv that sees the node's own torch; torch
#        is pinned to the installed version, never reinstalled.
# Uses $PYTHON (default python3): a Python with torch, where the rest is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu OUT=benchmarks/results/gpu_acceptance INSTALL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu|--dry-run) MODE=cpu ;;
        --install) INSTALL=1 ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--cpu] [--install] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
PYTHON=${PYTHON:-python3}
if [ "$INSTALL" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages .venv-node
    PYTHON=$ROOT/.venv-node/bin/python
    "$PYTHON" -c 'import torch; print(f"torch=={torch.__version__}")' > .venv-node/torch-pin.txt
    "$PYTHON" -m pip install --quiet --no-index $(printf -- '--find-links %s ' wheelhouse/*/) \
        -c .venv-node/torch-pin.txt -r wheelhouse/requirements.txt pytest
fi
export PATH=$(dirname "$PYTHON"):$PATH PYTHONPATH=$ROOT/workflow${PYTHONPATH:+:$PYTHONPATH} SLURM_CONF=/dev/null
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) && rm -f "$OUT"/*.json "$OUT"/*.md
declare -A SECONDS_IN
section() {  # section NAME COMMAND...: run it, time it, stop the script if it fails
    local name=$1 start=$SECONDS; shift
    echo; echo "== $name"
    "$@"
    SECONDS_IN[$name]=$((SECONDS - start))
}

if [ "$MODE" = gpu ]; then
    DEVICE=cuda SPEED=(--repeats 2) TEST=(tests/test_batched.py) SOURCE=config.yaml MIN_RUNS=200 HOURS=(10000)
    SNAKE=(--resources gpu=2)
else
    DEVICE=cpu SPEED=(--quick --repeats 1 --epochs 1 --precision-epochs 1 --seeds 2 --workers 0 --workloads mnist1d_cnn)
    TEST=(tests/test_batched.py -k diverges) SOURCE=tests/data/tiny.yaml MIN_RUNS=0 HOURS=(64 1) SNAKE=()
fi

environment() {
    "$PYTHON" - "$MODE" "$DEVICE" > "$OUT/environment.json" <<'EOF'
import json, platform, subprocess, sys, time
import torch
mode, device = sys.argv[1:]
cuda = device == "cuda" and torch.cuda.is_available()
driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                        capture_output=True, text=True).stdout.strip() if cuda else None
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mode": mode,
                  "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
                  "driver": driver, "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version()}))
EOF
    cat "$OUT/environment.json"
    if [ "$DEVICE" = cuda ]; then
        "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: use --cpu")'
        nvidia-smi
    fi
}
section versions environment
section train_speed "$PYTHON" benchmarks/train_speed.py --device "$DEVICE" "${SPEED[@]}" --out "$OUT/train_speed.json"
section equivalence "$PYTHON" -m pytest -q -p no:cacheprovider "${TEST[@]}" --device "$DEVICE"
STUDY=$OUT/study
rm -rf "$STUDY"
section study_config "$PYTHON" benchmarks/gpu_acceptance.py study "$OUT" "$DEVICE" "$SOURCE" "$MIN_RUNS"
section study "$PYTHON" -m snakemake -s "$ROOT/Snakefile" --directory "$STUDY" --configfile "$STUDY/config.yaml" \
    --workflow-profile "$ROOT/workflow/profiles/workstation" --cores all "${SNAKE[@]}" --quiet rules
section study_check "$PYTHON" benchmarks/gpu_acceptance.py check "$OUT" "$DEVICE"
section startup_share "$PYTHON" benchmarks/startup_share.py "$STUDY/results" --json "$OUT/startup_share.json"
section gpu_hours "$PYTHON" benchmarks/gpu_acceptance.py hours "$OUT" "$DEVICE" "${HOURS[@]}"
rm -rf "$STUDY/results/data" "$STUDY/.snakemake"   # prepared tensors and snakemake's state: not figures
{ echo '{'; for k in "${!SECONDS_IN[@]}"; do echo "\"${k}_seconds\": ${SECONDS_IN[$k]},"; done
  echo "\"total_seconds\": $SECONDS}"; } > "$OUT/sections.json"
"$PYTHON" benchmarks/gpu_acceptance.py report "$OUT"
