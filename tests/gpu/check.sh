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
#   pool_cuda      20  pool_cuda.log pool_cuda.json      region_pool on the GPU vs torch, and vs a copy
#   pool_cpu       20  pool_cpu.log pool_cpu.json        region_pool's CPU twin on the machine's cores
#   preprocess     20  preprocess.log preprocess.json    preprocess_frame vs Pillow
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
  step memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$PY" -m pytest -q -x -p no:cacheprovider --rootdir "$REPO" --junitxml "$WORK/memcheck_tests.xml" "${ids[@]}"
fi
if selected pool_cuda 1; then
  step pool_cuda 20 "$PY" "$REPO/tests/bench/bench_region_pool.py" --device cuda --json "$WORK/pool_cuda.json"
fi
if selected pool_cpu 1; then
  step pool_cpu 20 "$PY" "$REPO/tests/bench/bench_region_pool.py" --device cpu --json "$WORK/pool_cpu.json"
fi
if selected preprocess 1; then
  step preprocess 20 "$PY" "$REPO/tests/bench/bench_preprocess_frame.py" --json "$WORK/preprocess.json"
fi
finish
