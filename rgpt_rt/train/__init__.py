"""Training: the paper's two-stage recipe (`python -m rgpt_rt.train`), from one CPU to many GPUs.

recipe.py  what each stage trains and with which optimiser (STAGES), the run config
data.py    the JSON Lines training format, validation, the sample encoder (prompts exactly as at inference)
coco.py    COCO-format instance annotations -> task-guided samples on the fly
init.py    starting from a checkpoint (with or without a region module) or a config; the <region> token
lora.py    stage 2 with LoRA adapters (peft), merged into the written checkpoints
model.py   the cache-free batched forward and the answer-only loss
dist.py    process group, FSDP2 / DDP, memory
state.py   checkpoints (llava-layout model + training state, atomic) and resume
progress.py progress bar, metrics.jsonl, loss-curve PNG
loop.py    the loop: global batch, gradient accumulation, logging, checkpoints
toy.py     a seeded toy dataset (JSON Lines and COCO) for tests and benchmarks
"""

from .recipe import STAGES, RunConfig

__all__ = ["STAGES", "RunConfig", "run"]


def run(cfg: RunConfig) -> dict:
    from .loop import run as _run

    return _run(cfg)
