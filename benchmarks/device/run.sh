#!/usr/bin/env bash
# The device check in one command (BENCHMARKS.md, "Device check"): on the device machine,
#   benchmarks/device/run.sh            (run with carry: [".whl"]; results under $OUT)
# installs gfp and the wheels the image lacks (benchmarks/device/wheels.txt, fetched here by
# download_wheels.sh), then within a time budget (default 540 s, every step under `timeout`):
# the tests marked gpu, the speed figures, and a learning slice (GFP and FQL on
# cube-double-noisy task 2, the paper's settings, vmapped seeds, evaluated twice) on a dataset
# generated there with all cores. Writes $OUT/device_check.json, device_check.md and
# device_check.log.
#   benchmarks/device/run.sh --dry-run [--out DIR]
# runs the same steps here on the CPU at toy sizes (no install, a subset of the tests).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dry=0
budget=540
out=${OUT:-}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --budget) budget=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gfp: error: run.sh: unknown argument $1 (use --dry-run, --budget S, --out DIR)" >&2
       exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  echo "gfp: error: run.sh: no output folder: set \$OUT or pass --out DIR" >&2
  exit 2
fi
mkdir -p "$out"
start=$(date +%s)
work=$(mktemp -d /tmp/gfp-device.XXXXXX)
log=$out/device_check.log
: >"$work/steps.jsonl"
: >"$log"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 MUJOCO_GL=${MUJOCO_GL:-egl}

left() { echo $((budget - ($(date +%s) - start))); }

# step NAME SECONDS CMD...: CMD under timeout (at most SECONDS, never past the budget), its
# output appended to the log, its status and time to steps.jsonl. Fails when the budget is spent.
step() {
  local name=$1 want=$2 limit t0 rc
  shift 2
  limit=$(left)
  # the dry run's steps share its whole budget (the CPU here may be busy); the device's have each
  # their own limit as well
  [ "$dry" = 0 ] && [ "$want" -lt "$limit" ] && limit=$want
  if [ "$limit" -le 5 ]; then
    echo "{\"name\": \"$name\", \"rc\": -1, \"seconds\": 0, \"limit\": $limit}" >>"$work/steps.jsonl"
    echo "== $name: skipped, the time budget is spent" >>"$log"
    return 1
  fi
  echo "== $name (limit ${limit}s): $*" >>"$log"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  echo "{\"name\": \"$name\", \"rc\": $rc, \"seconds\": $(($(date +%s) - t0)), \"limit\": $limit}" \
    >>"$work/steps.jsonl"
  echo "== $name: exit $rc after $(($(date +%s) - t0))s" >>"$log"
  return $rc
}

if [ "$dry" = 1 ]; then
  # the Python of the checkout's venv unless told (PYTHON=...; the test passes its own)
  py=${PYTHON:-$root/.venv/bin/python}
  [ -x "$py" ] || py=python3
  toy=--toy
  workers=2 episodes=2 length=(--episode-length 101) seeds=0,1 eval_episodes=1
  tests=(tests/test_gpu.py -k "device_once or trained_on_the_default")
  tiny=(--actor-hidden-dims 16 16 --value-hidden-dims 16 16 --batch-size 16 --flow-steps 2)
else
  py=${PYTHON:-python3}
  toy=
  workers=$(nproc) episodes=${GFP_DEVICE_EPISODES:-500} length=() seeds=0,1,2,3,4,5,6,7
  eval_episodes=10
  tests=(tests/test_gpu.py)
  tiny=()
  wheels=(.whl/*.whl)
  runtime=()
  for w in "${wheels[@]}"; do case $(basename "$w") in setuptools-*) ;; *) runtime+=("$w") ;; esac; done
  # the runtime wheels exactly as listed, then gfp itself (built with the carried setuptools)
  step install 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site "${runtime[@]}" || { echo "install failed" >&2; }
  step install-gfp 120 "$py" -m pip install -q --no-index --no-deps --no-cache-dir \
    --find-links .whl --target /tmp/site . || { echo "gfp install failed" >&2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
  nvidia-smi >>"$log" 2>&1 || true
fi
gfp=("$py" -m gfp.cli)
check=("$py" benchmarks/device/check.py)

step info 60 "${check[@]}" info --out "$work/info.json"
# the dataset first, with every core, before anything else wants them
step data 150 "${gfp[@]}" data generate cube-double-noisy-v0 --episodes "$episodes" \
  --workers "$workers" --out "$work/data" "${length[@]}"
step tests 150 "$py" -m pytest -q -p no:cacheprovider -m gpu --junitxml="$work/tests.xml" \
  "${tests[@]}"
step speed 150 "${check[@]}" speed $toy --out "$work/speed.json"
# the learning slice gets what is left, shared by the two agents
slice=$(($(left) - 25))
read -r steps log_every eval_every < <("${check[@]}" plan --speed "$work/speed.json" \
  --seconds "$slice" --agents 2 $toy --out "$work/plan.json")
for agent in gfp fql; do
  [ "$agent" = gfp ] && per=$(( ($(left) - 25) / 2 ))
  [ "$agent" = fql ] && per=$(( $(left) - 25 ))
  step "train-$agent" "$per" "${gfp[@]}" train --task cube-double-noisy-singletask-task2-v0 \
    --agent "$agent" --seeds "$seeds" --steps "$steps" --log-every "$log_every" \
    --eval-every "$eval_every" --eval-episodes "$eval_episodes" --checkpoint-every 0 \
    --dataset-dir "$work/data" --out "$work/runs/$agent" "${tiny[@]}"
done
# the summary always gets its time (outside the budget's steps)
timeout 60 "${check[@]}" collect --work "$work" --out "$out" $([ "$dry" = 1 ] && echo --dry-run) \
  >>"$log" 2>&1
cp "$work/tests.xml" "$out/tests.xml" 2>/dev/null || true
echo "device check: $(($(date +%s) - start)) s; $out/device_check.md"
cat "$out/device_check.md" 2>/dev/null | head -60
