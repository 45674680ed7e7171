#!/usr/bin/env bash
# compute-sanitizer over the CUDA ops, for a device command on an H100/H200 after tests/gpu/fast_path.sh.
#   bash tests/gpu/check.sh            (device tool: timeout_s 600; the run stops itself by 540 s)
#   bash tests/gpu/check.sh STEP...    only the named steps
#
# Plan (step, time limit in s, files it leaves in the work folder, packed into $OUT after each step; $OUT
# holds 3 files: results.json, logs.tar.gz, summary.txt):
#   build         120  build.log                       pip install, RGPT_REQUIRE_CUDA=ON, sm_90; stops on failure
#   check          15  check.log check.json            prints build_info(); stops unless _C_cuda runs on the GPU
#   memcheck      200  memcheck.log memcheck_tests.xml  pytest under compute-sanitizer memcheck, node ids from
#                                                      tests/gpu/memcheck_tests.txt
#   op_benches     60  op_benches.log region_pool_cuda.json region_pool_cpu.json preprocess.json
#   (packing)      15  results.json logs.tar.gz summary.txt
#   total         410  (under 540 s; each step is also cut to what is left of RGPT_GPU_BUDGET_S=540)
#
# Exit status: 0 when every step passed (memcheck: no error reported); 1 otherwise. The build and check steps
# stop the run at once. tests/test_gpu_script.py checks this plan against the code below.
source "$(dirname "$0")/lib.sh"

build_step 120
check_step 15

if selected memcheck 1; then
  mapfile -t ids < <(node_ids memcheck_tests.txt)
  step memcheck 200 bash -c 'command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found"; exit 127; }
    exec compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 "$@"' _ \
    "$PY" -m pytest -q -x -p no:cacheprovider --rootdir "$REPO" --junitxml "$WORK/memcheck_tests.xml" "${ids[@]}"
fi
if selected op_benches 1; then
  B="$REPO/tests/bench"
  step op_benches 60 bash -c "'$PY' '$B/bench_region_pool.py' --device cuda --json '$WORK/region_pool_cuda.json'; a=\$?
    '$PY' '$B/bench_region_pool.py' --device cpu --json '$WORK/region_pool_cpu.json'; b=\$?
    '$PY' '$B/bench_preprocess_frame.py' --json '$WORK/preprocess.json' && exit \$((a | b))"
fi
finish
