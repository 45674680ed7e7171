"""Training as users launch it (subprocesses): two gloo ranks under torchrun against one process, and a real
SIGKILL mid-run followed by a resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rgpt_rt.train.toy import write_toy_dataset

STEPS = 4


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy_dist"), n=16, seed=1)


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("RGPT_TRAIN_SIGKILL_AT_STEP", None)
    env.update(extra)
    return env


def _args(toy, init, out, micro_batch, parallel="fsdp"):
    return [
        *f"--stage 2 --global-batch 8 --micro-batch {micro_batch} --max-steps {STEPS} --max-seq-len 256".split(),
        *f"--lr 3e-3 --save-every 2 --parallel {parallel}".split(),
        *["--init", str(init), "--data", str(toy), "--output", str(out)],
    ]


def _train(args, ranks=1, **env):
    # Run outside the checkout so that the installed package (with its native module) is imported.
    cwd = os.path.dirname(args[args.index("--output") + 1])
    cmd = [sys.executable, "-P", "-m", "rgpt_rt.train", *args]
    if ranks > 1:
        launch = f"-P -m torch.distributed.run --standalone --nproc_per_node {ranks} -m rgpt_rt.train".split()
        cmd = [sys.executable, *launch, *args]
    return subprocess.run(cmd, env=_env(**env), cwd=cwd, capture_output=True, text=True, timeout=300)


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(toy, tiny_llava, tmp_path_factory):
    """The reference: one process, FSDP2 over a single rank, 2 micro-batches of 4 per step."""
    out = tmp_path_factory.mktemp("one") / "run"
    r = _train(_args(toy, tiny_llava, out, micro_batch=4))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


# DDP runs the same check in tests/bench/bench_train.py (one more torchrun here costs ~25 s of CI).
@pytest.mark.parametrize("parallel", ["fsdp"])
def test_two_gloo_ranks_give_the_losses_of_one_process(toy, tiny_llava, tmp_path, one_process, parallel):
    out = tmp_path / parallel
    # 2 ranks x 2 micro-batches of 2 = the same global batch of 8, split differently.
    r = _train(_args(toy, tiny_llava, out, micro_batch=2, parallel=parallel), ranks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    ref, got = _losses(one_process), _losses(out)
    print(f"{parallel} 2 ranks {got}\n1 process      {ref}")
    assert len(got) == len(ref) == STEPS
    # Only the order of float32 sums differs (per-rank partial sums, gradient averaging): 1e-5 relative.
    for a, b in zip(got, ref):
        assert abs(a - b) <= 1e-5 * abs(b), (got, ref)
    assert ref[-1] < 0.7 * ref[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"] == 2 and len(summary["peak_mem_mb_per_rank"]) == 2


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_losses(toy, tiny_llava, tmp_path, one_process):
    out = tmp_path / "killed"
    args = _args(toy, tiny_llava, out, micro_batch=4)
    r = _train(args, RGPT_TRAIN_SIGKILL_AT_STEP="3")  # checkpoints at 2, killed after step 3
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000002"
    assert len(_losses(out)) == 3
    r = _train(args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stderr and "step_0000002" in r.stderr
    # Data order, optimizer state, schedule and RNG all restored: the same numbers, bit for bit.
    assert _losses(out) == _losses(one_process)
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 2
