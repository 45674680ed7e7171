#!/usr/bin/env bash
# The GPU fast-path set for one device command on an H100/H200 of at most 9 minutes, the build included.
#   bash tests/gpu/fast_path.sh            (device tool: timeout_s 600; the run stops itself by 540 s)
#   bash tests/gpu/fast_path.sh STEP...    only the named steps (e.g. `build check compile compile_tests`)
#
# Plan (step, time limit in s, files it leaves in the work folder; every step's numbers are merged into
# $OUT/results.json and every file into $OUT/logs.tar.gz after each step, so a run stopped early still returns
# what it did; $OUT holds 3 files: results.json, logs.tar.gz, summary.txt):
#   build         120  build.log                         pip install, RGPT_REQUIRE_CUDA=ON, sm_90; stops on failure
#   check          15  check.log check.json              prints build_info(); stops unless _C_cuda runs on the GPU
#   tests          90  tests.log tests.xml               pytest, node ids from tests/gpu/fast_path_tests.txt
#   decode_ops     20  decode_ops.log decode_ops.json    the decode ops vs torch at one 7B layer, batch 1 and 8
#   int8_op        25  int8_op.log int8_op.json          int8_linear vs fp16 matmul at the 7B projections
#   fp16           70  fp16.log fp16.json                7B random weights, fp16, 1 and 8 regions, fused vs reference
#   int8           60  int8.log int8.json                the same with the int8 decoder, 8 regions
#   soak           35  soak.log soak.json                tiny model, up to 10,000 describes within 12 s
#   hf             70  hf.log hf.json                    transformers alone (--hf-only), eager and static, no compile
#   (packing)      20  results.json logs.tar.gz summary.txt   about 1 s after each step, and the table last
#   total         525  (under 540 s = 9 minutes; each step is also cut to what is left of RGPT_GPU_BUDGET_S=540)
#
# Optional second call, only when named (torch.compile's autotuning is slow), on a warm or fresh machine:
#   bash tests/gpu/fast_path.sh build check compile compile_tests
#   compile       240  compile.log compile.json          7B fp16, fused vs torch.compile decode step
#   compile_tests  90  compile_tests.log compile_tests.xml  node ids from tests/gpu/compile_tests.txt
#   total second  485  (build 120 + check 15 + 240 + 90 + packing 20)
#
# Exit status: 0 when every step passed; 1 when a step failed or timed out (the run goes on to the next); the
# build and check steps stop the run at once. tests/test_gpu_script.py checks this plan against the code below.
source "$(dirname "$0")/lib.sh"

BENCH=("$PY" -m rgpt_rt.bench --random-7b --new-tokens 64 --repeats 3)
PYTEST=("$PY" -m pytest -q -rs -p no:cacheprovider --rootdir "$REPO")

build_step 120
check_step 15

if selected tests 1; then
  mapfile -t ids < <(node_ids fast_path_tests.txt)
  step tests 90 "${PYTEST[@]}" --junitxml "$WORK/tests.xml" "${ids[@]}"
fi
if selected decode_ops 1; then
  step decode_ops 20 "$PY" "$REPO/tests/bench/bench_decode_ops.py" --batch 1,8 --context 650 --slots 2048 \
    --json "$WORK/decode_ops.json"
fi
if selected int8_op 1; then
  step int8_op 25 "$PY" "$REPO/tests/bench/bench_int8_linear.py" --rows 1,8 --json "$WORK/int8_op.json"
fi
if selected fp16 1; then
  step fp16 70 "${BENCH[@]}" --precision fp16 --regions 1,8 --decode fused,reference --json "$WORK/fp16.json"
fi
if selected int8 1; then
  step int8 60 "${BENCH[@]}" --precision int8 --regions 8 --decode fused,reference --json "$WORK/int8.json"
fi
if selected soak 1; then
  step soak 35 "$PY" -m rgpt_rt.bench --device cuda --soak 10000 --soak-seconds 12 --soak-only --new-tokens 4 \
    --json "$WORK/soak.json"
fi
if selected hf 1; then
  step hf 70 "${BENCH[@]}" --precision fp16 --hf-only --json "$WORK/hf.json"
fi
if selected compile 0; then
  step compile 240 "${BENCH[@]}" --precision fp16 --regions 1 --decode fused,compile --json "$WORK/compile.json"
fi
if selected compile_tests 0; then
  mapfile -t ids < <(node_ids compile_tests.txt)
  step compile_tests 90 "${PYTEST[@]}" --junitxml "$WORK/compile_tests.xml" "${ids[@]}"
fi
finish
