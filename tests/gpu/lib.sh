# Shared by tests/gpu/fast_path.sh and tests/gpu/check.sh (sourced, not run). Sets:
#   REPO (the checkout), OUT (what the device machine returns: results.json, logs.tar.gz, summary.txt),
#   WORK (every log and raw file; packed into $OUT after each step), PY (python3 there), and the run's
#   deadline: RGPT_GPU_BUDGET_S (default 540) seconds from the start, less RESERVE_S for the last pack.
# Defines:
#   step NAME LIMIT CMD...   run CMD with its output in $WORK/NAME.log, killed after LIMIT seconds (or when the
#                            budget runs out, whichever comes first); record the outcome; pack $OUT
#   finish                   pack $OUT, print the table last, exit 1 if any step failed
#   build_step / check_step  the two steps every GPU run starts with; each stops the run at once on failure
# Positional arguments of the script name the steps to run (default: its default set).
# RGPT_GPU_DRY_RUN=1 prints each step (name, limit, argv; fields split by \x1f, steps by \x1e) and runs
# nothing: tests/test_gpu_script.py checks the plan, the node ids and the bench options that way.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-/tmp/rgpt_gpu_out}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
BUDGET_S=${RGPT_GPU_BUDGET_S:-540}
RESERVE_S=${RGPT_GPU_RESERVE_S:-10}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rgpt_gpu_work.XXXXXX")
START_S=$SECONDS
SELECTED=" ${*:-} "
FAILED=0
printf '{"script": "%s", "budget_s": %s, "steps_requested": "%s"}\n' "$(basename "$0")" "$BUDGET_S" \
  "$(echo ${*:-default})" >"$WORK/meta.json"
cd "$WORK" || exit 1 # every step imports the installed package, never the checkout
DRY=${RGPT_GPU_DRY_RUN:-0}
[ "$DRY" = 1 ] && printf '%s\x1f' WORK "$WORK" && printf '\x1e'

pack() { "$PY" "$REPO/tests/gpu/summarize.py" "$WORK" "$OUT" "$@"; }

selected() {  # selected NAME DEFAULT(1|0): named on the command line, or in the default set when none is named
  if [ "$SELECTED" = "  " ]; then [ "$2" = 1 ]; else [[ "$SELECTED" == *" $1 "* ]]; fi
}

step() {  # step NAME LIMIT CMD...
  local name=$1 limit=$2
  shift 2
  if [ "$DRY" = 1 ]; then
    printf '%s\x1f' STEP "$name" "$limit" "$@" && printf '\x1e'
    return 0
  fi
  local left=$((BUDGET_S - RESERVE_S - (SECONDS - START_S)))
  local run_limit=$((limit < left ? limit : left))
  echo "== $name (limit ${run_limit} s)"
  if [ "$run_limit" -lt 5 ]; then
    printf '%s\t%s\t%s\t\t0\tSKIPPED (budget spent)\n' "$name" "$limit" "$run_limit" >>"$WORK/steps.tsv"
    echo "skipped: ${left} s of the ${BUDGET_S} s budget left"
    FAILED=1
    pack
    return 1
  fi
  local t0=$SECONDS
  timeout -k 5 "$run_limit" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL:-15}" "$WORK/$name.log"
  printf '%s\t%s\t%s\t%s\t%s\t\n' "$name" "$limit" "$run_limit" "$rc" "$((SECONDS - t0))" >>"$WORK/steps.tsv"
  [ "$rc" = 0 ] || FAILED=1
  pack
  return "$rc"
}

finish() {
  [ "$DRY" = 1 ] && exit 0
  echo "== summary (results.json, logs.tar.gz, summary.txt in $OUT; $((SECONDS - START_S)) s)"
  pack --print
  exit "$FAILED"
}

stop() {  # stop MESSAGE: the run cannot go on
  echo "FAILED: $*"
  printf '%s\n' "$*" >"$WORK/stopped.log"
  FAILED=1
  finish
}

build_step() {  # pip install of the checkout with the CUDA module required (a missing nvcc fails at configure)
  selected build 1 || return 0
  if ! command -v nvcc >/dev/null; then # CMake looks for nvcc on PATH only
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
      [ -x "$d/nvcc" ] && export PATH="$PATH:$d" && break
    done
  fi
  step build "$1" bash -c "cd '$REPO' && RGPT_CPU_ONLY=OFF RGPT_REQUIRE_CUDA=ON \
    RGPT_CUDA_ARCHS=\${RGPT_CUDA_ARCHS:-90} CMAKE_BUILD_PARALLEL_LEVEL=\$(nproc) \
    '$PY' -m pip install -v --no-build-isolation --no-deps --no-index ."
  case $? in
    0) ;;
    124 | 137) stop "the build timed out (build.log in logs.tar.gz)" ;;
    *) stop "the build failed: $(grep -h -m1 -A2 'CMake Error' "$WORK/build.log" | tr -s ' \n' ' ' | cut -c1-300)" \
      "(build.log in logs.tar.gz; RGPT_REQUIRE_CUDA=ON makes a missing nvcc a configure error)" ;;
  esac
  [ "$DRY" = 1 ] || grep -h "rgpt_rt:" "$WORK/build.log" || true
}

check_step() {  # print build_info(); stop unless the CUDA module was built, sees a GPU and runs its SM code
  selected check 1 || return 0
  TAIL=40 step check "$1" "$PY" "$REPO/tests/gpu/check_build.py" --json "$WORK/check.json" ||
    stop "check: $(tail -n 1 "$WORK/check.log" 2>/dev/null || echo skipped)"
}

node_ids() {  # node_ids FILE: the selection file's pytest node ids, as paths under $REPO
  grep -v '^\s*\(#\|$\)' "$REPO/tests/gpu/$1" | sed "s|^|$REPO/|"
}
