"""Training throughput of the tiny config: one process against two ranks (FSDP2 and DDP), in one run.

    python tests/bench/bench_train.py [--steps 12] [--global-batch 16] [--json FILE]

Each configuration is a real `python -m rgpt_rt.train` run (torchrun for two ranks, gloo on the CPU, NCCL on
GPUs) over the same toy data and global batch. tokens/s counts every sequence token (prompt, image and
region tokens, answers) of the global batch per optimiser step, the median over the steps after two
warm-up steps. The losses of the runs must agree (same global batch); the largest difference is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import emit  # noqa: E402

from rgpt_rt.testing import make_tiny_checkpoint  # noqa: E402
from rgpt_rt.train.toy import write_toy_dataset  # noqa: E402


def run(tmp: Path, name: str, ranks: int, parallel: str, ckpt: Path, data: Path, a) -> dict:
    out = tmp / name
    per_rank = a.global_batch // ranks
    micro = min(per_rank, a.micro_batch)
    args = [
        *f"--stage 2 --global-batch {a.global_batch} --micro-batch {micro} --max-steps {a.steps}".split(),
        *f"--max-seq-len 256 --lr 1e-3 --save-every {10**6} --parallel {parallel}".split(),
        *["--init", str(ckpt), "--data", str(data), "--output", str(out)],
    ]
    cmd = [sys.executable, "-m", "rgpt_rt.train", *args]
    if ranks > 1:
        launch = f"-m torch.distributed.run --standalone --nproc_per_node {ranks} -m rgpt_rt.train".split()
        cmd = [sys.executable, *launch, *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    r = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "run": name,
        "ranks": ranks,
        "parallel": parallel,
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows[2:]), 1),
        "step_ms": round(statistics.median(r["step_s"] for r in rows[2:]) * 1e3, 1),
        "peak_mem_mb_per_rank": [round(m) for m in summary["peak_mem_mb_per_rank"]],
        "losses": [r["loss"] for r in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP threads per rank")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = make_tiny_checkpoint(tmp / "ckpt")
        data = write_toy_dataset(tmp / "toy", n=64)
        rows = [
            run(tmp, "1 process", 1, "fsdp", ckpt, data, a),
            run(tmp, "2 ranks fsdp2", 2, "fsdp", ckpt, data, a),
            run(tmp, "2 ranks ddp", 2, "ddp", ckpt, data, a),
        ]
    ref = rows[0]["losses"]
    for r in rows:
        r["max_rel_loss_diff_vs_1"] = f"{max(abs(x - y) / abs(y) for x, y in zip(r['losses'], ref)):.1e}"
        r["speedup_vs_1"] = round(r["tokens_per_s"] / rows[0]["tokens_per_s"], 2)
        r["final_loss"] = round(r.pop("losses")[-1], 4)
    emit(
        rows,
        a.json,
        f"training throughput, tiny llava config, stage 2, global batch {a.global_batch}, "
        f"{a.threads} thread(s) per rank",
    )


if __name__ == "__main__":
    main()
