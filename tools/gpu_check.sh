#!/usr/bin/env bash
# The GPU check: one command, under 8 minutes on one H100/H200 (longer on a Colab T4), that measures what the CPU
# tests cannot: the precision chosen, bench/epoch.py and bench/budget.py on the GPU, --compile and its recompiles,
# kill -9 + resume, the host-to-device copies of a training batch, and chapters 5 and 10 under nbdev_test.
#
#   bash tools/gpu_check.sh              # on a machine with a CUDA GPU; writes bench/results/gpu.json
#   bash tools/gpu_check.sh --dry-run    # the same steps on the CPU at tiny sizes (CI runs it), skipping what needs
#                                        # CUDA; writes its record to a temporary file unless --out is given
#   bash tools/gpu_check.sh --wheels     # here, with pip: download into .whl/ the wheels a machine without a package
#                                        # index needs (fastcore, fastprogress, nbdev and what they need)
# Options: --out FILE (the record), --data-dir DIR (else $VIT_DATA_DIR, else ~/cifar10, else ../shared/data/cifar10,
# else ./data, where CIFAR-10 is downloaded when missing). CIFAR-10 for a lent device machine: stage it with
# ../shared/tools/stage-cifar10-for-device (it prints the calls to make), then run this with VIT_DATA_DIR=~/cifar10.
# Packages: the checkout is put first on PYTHONPATH; a missing package is installed from .whl/ when that folder exists
# (pip --no-index), else the check stops and says what to install (`pip install -e ".[notebooks]"`).
# Every step runs even when an earlier one failed; the exit code is 1 if any failed. Each step's status, seconds,
# findings and last output lines are in the record.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dry=0; out=''; data_dir=${VIT_DATA_DIR:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) dry=1 ;;
    --out) out=$2; shift ;;
    --data-dir) data_dir=$2; shift ;;
    --wheels)
      rm -rf .whl; mkdir -p .whl
      exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
      grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
      python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        "fastcore>=1.12.3,<2" "fastprogress>=1.0.3" "nbdev==2.4.14" "execnb<0.2" "ghapi<2"
      echo "wheels in .whl/ ($(du -sh .whl | cut -f1)); carry .whl to the device machine with the checkout"
      exit 0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
steps=$work/steps; mkdir -p "$steps"
t_all=$SECONDS

# -- the device
if [[ $dry == 1 ]]; then device=cpu
elif "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then device=cuda
else echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); use --dry-run on a CPU" >&2; exit 1; fi
[[ -n $out ]] || out=$([[ $dry == 1 ]] && echo "$work/gpu.json" || echo bench/results/gpu.json)

# -- the packages: the checkout's vit_nbdev, its requirements, nbdev for the chapters
missing=$("$PY" - <<'EOF'
import importlib.util as u
need = ['torch', 'torchvision', 'matplotlib', 'fastcore', 'safetensors', 'fastprogress', 'PIL', 'numpy', 'nbdev',
        'execnb']
print(' '.join(n for n in need if u.find_spec(n) is None))
EOF
)
if [[ -n $missing && -d .whl ]]; then
  echo "installing from .whl/ (no index): $missing"
  "$PY" -m pip install -q --no-index --find-links .whl "fastcore>=1.12.3,<2" "fastprogress>=1.0.3" "nbdev==2.4.14" \
    "execnb<0.2" "ghapi<2"
elif [[ -n $missing ]]; then
  echo "gpu_check: missing Python packages: $missing. Install them (pip install -e \".[notebooks]\"), or on a machine" \
       "without an index run 'bash tools/gpu_check.sh --wheels' where pip works and carry .whl/ along" >&2
  exit 1
fi

# -- CIFAR-10
if [[ -z $data_dir ]]; then
  for d in ~/cifar10 ../shared/data/cifar10; do
    if [[ -f $d/cifar-10-batches-py/data_batch_1 ]]; then data_dir=$(cd "$d" && pwd); break; fi
  done
fi
if [[ -n $data_dir ]]; then export VIT_DATA_DIR=$data_dir; fi
echo "gpu_check: device $device$([[ $dry == 1 ]] && echo ' (dry run: tiny sizes)'), CIFAR-10 in ${VIT_DATA_DIR:-./data}," \
     "python $("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"

# -- the steps: each one's output goes to its log; its status and seconds to $steps/NAME.status.json
order=0; failed=()
status() {  # NAME STATUS SECONDS NOTE
  order=$((order + 1))
  "$PY" -c 'import json, sys; n, s, t, note, o, f = sys.argv[1:7]
json.dump(dict(name=n, status=s, seconds=float(t), note=note, order=int(o)), open(f, "w"))' \
    "$1" "$2" "$3" "$4" "$order" "$steps/$1.status.json"
}
step() {  # NAME TIMEOUT_S COMMAND...: run it with a time limit, log it, record pass/fail
  local name=$1 limit=$2; shift 2
  local start=$SECONDS rc=0
  echo "== $name: $*"
  timeout --signal=KILL "$limit" "$@" > "$steps/$name.log" 2>&1 || rc=$?
  tail -n 15 "$steps/$name.log" | sed 's/^/   /'
  local s=pass note=''
  if [[ $rc == 137 ]]; then s=fail; note="killed after its limit of $limit s"
  elif [[ $rc != 0 ]]; then s=fail; note="exit code $rc"; fi
  [[ $s == pass ]] || failed+=("$name")
  echo "-- $name: $s in $((SECONDS - start)) s ${note:+($note)}"
  status "$name" "$s" "$((SECONDS - start))" "$note"
  if [[ $dry == 0 ]]; then record >/dev/null 2>&1 || true; fi   # a run cut short still leaves the steps done
}
record() {  # write the record of the steps so far
  "$PY" tools/gpu_check.py collect --steps "$steps" --device "$device" --out "$out" \
    --command "tools/gpu_check.sh$([[ $dry == 1 ]] && echo ' --dry-run')"
}
skip() {  # NAME WHY
  echo "== $1: skipped ($2)"; status "$1" skip 0 "$2"
}
count_recompiles() {  # NAME: add the recompilations TORCH_LOGS=recompiles reported in its log to its findings
  local n
  n=$(grep -c 'Recompiling function' "$steps/$1.log" || true)
  "$PY" -c 'import json, sys; p, n = sys.argv[1:3]
try: d = json.load(open(p))
except (OSError, ValueError): d = {}
d["recompiles"] = int(n); json.dump(d, open(p, "w"), indent=1)' "$steps/$1.json" "$n"
  echo "$1: $n recompilations (TORCH_LOGS=recompiles)"
}

if [[ $dry == 1 ]]; then   # one thread everywhere (the reference's epochs too): CI's two cores, no waiting threads
  export OMP_NUM_THREADS=1
  sizes=(--train-sample-size 512 --test-sample-size 256)
  cpu=(--threads 1)
else
  sizes=(); cpu=()
fi

step precision 120 "$PY" tools/gpu_check.py precision --device "$device" --out "$steps/precision.json"

if [[ $dry == 1 ]]; then
  step copies 180 "$PY" tools/gpu_check.py copies --device cpu --recipe reference --train-sample-size 256 \
    --batch-size 128 --out "$steps/copies.json"
else
  step copies 180 "$PY" tools/gpu_check.py copies --device cuda --recipe fast --train-sample-size 8192 \
    --batch-size 256 --out "$steps/copies.json"
fi

step epoch 240 "$PY" bench/epoch.py --device "$device" --out "$steps/epoch.json" "${sizes[@]}"

if [[ $dry == 1 ]]; then
  step resume 240 "$PY" tools/check_resume.py --epochs 2 --kill-after 1 -- --device cpu "${sizes[@]}" "${cpu[@]}" \
    --batch-size 128
else
  step resume 300 "$PY" tools/check_resume.py --epochs 4 --kill-after 2 -- --device cuda --train-sample-size 10000 \
    --test-sample-size 2000
fi

if [[ $dry == 1 ]]; then   # the budget recipe's stages at tiny size; torch.compile on the CPU takes minutes
  step budget 240 "$PY" bench/budget.py --out "$steps/budget.json" -- --exp-name gpu_budget --out-dir "$work/exp" \
    --recipe budget --epochs 6 --eval-every 6 --batch-size 128 --device cpu --overwrite "${sizes[@]}" "${cpu[@]}"
  skip compile_fast 'torch.compile on the CPU takes minutes'
else
  step compile_fast 180 env TORCH_LOGS=recompiles "$PY" -m vit_nbdev.commands --exp-name gpu_fast --out-dir "$work/exp" \
    --recipe fast --epochs 2 --device cuda --compile --overwrite --no-progress
  count_recompiles compile_fast
  step budget 300 env TORCH_LOGS=recompiles "$PY" bench/budget.py --out "$steps/budget.json" -- --exp-name gpu_budget \
    --out-dir "$work/exp" --recipe budget --epochs 28 --eval-every 28 --device cuda --compile --overwrite
  count_recompiles budget
fi

if [[ $dry == 1 ]]; then
  skip nbdev_test_05 'CI runs every chapter under nbdev_test in its test step'
  skip nbdev_test_10 'CI runs every chapter under nbdev_test in its test step'
else
  for nb in 05_training 12_commands; do
    step "nbdev_test_${nb%%_*}" 300 "$PY" -c 'from nbdev.test import nbdev_test; nbdev_test()' --path "nbs/$nb.ipynb" \
      --do_print
  done
fi

echo "== record: $out"
rc=0
record || rc=$?
echo "gpu_check: $((SECONDS - t_all)) s in all"
if [[ ${#failed[@]} -gt 0 || $rc != 0 ]]; then
  echo "gpu_check: FAILED: ${failed[*]:-the record}" >&2; exit 1
fi
echo "gpu_check: all steps passed"
