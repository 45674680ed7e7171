"""python -m rgpt_rt.train --stage 1 --init CHECKPOINT --data train.jsonl --output runs/stage1

One process:         python -m rgpt_rt.train ...
Several (GPUs/CPUs): torchrun --nproc_per_node 8 -m rgpt_rt.train ...
Running the same command again resumes from OUTPUT/checkpoints/latest.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import RgptError
from .recipe import STAGES, RunConfig


def parse_args(argv: list[str] | None = None) -> RunConfig:
    d = RunConfig()
    stages = "; ".join(
        f"{k}: {s.name}, trains {'+'.join(s.trains)}, lr {s.lr:g}, batch {s.global_batch}" for k, s in STAGES.items()
    )
    p = argparse.ArgumentParser(prog="python -m rgpt_rt.train", description=f"RegionGPT training. Stages: {stages}.")
    p.add_argument("--stage", type=int, default=d.stage, choices=sorted(STAGES))
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="training JSON Lines or COCO instances .json (repeat for several)",
    )
    p.add_argument("--image-root", help="base directory of relative image paths (default: the data file's)")
    p.add_argument("--output", default=d.output, help="run directory: checkpoints, metrics.jsonl, summary.json")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", help="checkpoint to start from (llava layout; a region module is optional)")
    start.add_argument("--init-config", help="llava config.json to start from random weights")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the --init checkpoint's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the stage's)")
    p.add_argument("--global-batch", type=int, help="samples per optimiser step over all ranks (default: the stage's)")
    p.add_argument("--micro-batch", type=int, default=d.micro_batch, help="samples per forward on one rank")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--train-vision", action="store_true", help="train the vision tower as well")
    p.add_argument(
        "--region-forms",
        default=json.dumps(d.region_forms),
        help="JSON weights of the forms regions are given in, e.g. '{\"mask\": 1}'",
    )
    p.add_argument("--parallel", default=d.parallel, choices=("fsdp", "ddp", "none"))
    p.add_argument("--precision", default=d.precision, choices=("auto", "bf16", "fp32"))
    p.add_argument("--activation-checkpointing", choices=("on", "off"), help="default: on for CUDA, off on the CPU")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--keep", type=int, default=d.keep)
    p.add_argument("--save-dtype", default=d.save_dtype, choices=("fp32", "bf16", "fp16"))
    p.add_argument("--lora-rank", type=int, default=0, help="stage 2: train LoRA adapters of this rank (needs peft)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: 2 x rank)")
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    a = p.parse_args(argv)
    try:
        forms = json.loads(a.region_forms)
    except json.JSONDecodeError as exc:
        p.error(f"--region-forms is not JSON: {exc}")
    return RunConfig(
        stage=a.stage,
        data=a.data,
        image_root=a.image_root,
        output=a.output,
        init=a.init,
        init_config=a.init_config,
        tokenizer=a.tokenizer,
        lr=a.lr,
        global_batch=a.global_batch,
        epochs=a.epochs,
        max_steps=a.max_steps,
        warmup_ratio=a.warmup_ratio,
        micro_batch=a.micro_batch,
        max_seq_len=a.max_seq_len,
        train_vision=a.train_vision,
        region_forms=forms,
        parallel=a.parallel,
        precision=a.precision,
        activation_checkpointing=None if a.activation_checkpointing is None else a.activation_checkpointing == "on",
        seed=a.seed,
        save_every=a.save_every,
        log_every=a.log_every,
        keep=a.keep,
        save_dtype=a.save_dtype,
        lora_rank=a.lora_rank,
        lora_alpha=a.lora_alpha,
        lora_dropout=a.lora_dropout,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    from .loop import run

    try:
        run(cfg)
    except RgptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
