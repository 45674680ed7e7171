"""The two-stage recipe, stated in one place: what each stage trains, its optimiser and batch (paper + LLaVA-1.5).

    stage 1 (align)            vision tower frozen, LLM frozen;    refinement + connector(s) trained
                               lr 1e-3, cosine, warm-up 3%, global batch 256, 1 epoch
    stage 2 (region_instruct)  vision tower frozen;                 refinement + connector(s) + LLM trained
                               lr 2e-5, cosine, warm-up 3%, global batch 128, 1 epoch

`train_vision=True` unfreezes the vision tower as well (the nano world trains everything). AdamW with
betas (0.9, 0.999), no weight decay and gradient clipping at 1.0, as LLaVA's scripts run the HF Trainer.
A RunConfig is one run: every field is on the command line, and the resolved config is written beside the
checkpoints so that a resume can check it is continuing the same run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str
    trains: tuple[str, ...]  # RegionGPT sub-modules whose parameters receive gradients
    lr: float
    global_batch: int
    epochs: float = 1.0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0


CONNECTORS = ("refiner", "image_connector", "region_connector")
STAGES = {
    1: Stage("align", trains=CONNECTORS, lr=1e-3, global_batch=256),
    2: Stage("region_instruct", trains=(*CONNECTORS, "llm"), lr=2e-5, global_batch=128),
}

REGION_FORMS = ("mask", "box", "polygon")


@dataclass
class RunConfig:
    """One training run. None fields take the stage's default (see STAGES)."""

    stage: int = 1
    data: list[str] = field(default_factory=list)  # JSON Lines files (.jsonl) and COCO instances files (.json)
    image_root: str | None = None  # base of relative image paths (default: each data file's directory)
    output: str = "runs/rgpt"
    init: str | None = None  # checkpoint directory (llava layout, with or without the region module)
    init_config: str | None = None  # ... or a llava config.json to start from random weights
    tokenizer: str | None = None  # tokenizer directory (default: the init checkpoint's)
    lr: float | None = None
    global_batch: int | None = None
    epochs: float | None = None
    max_steps: int | None = None  # stop after this many optimiser steps (default: the epochs' worth)
    warmup_ratio: float | None = None
    micro_batch: int = 4  # samples per forward on one rank
    max_seq_len: int = 2048
    train_vision: bool = False
    region_forms: dict[str, float] = field(default_factory=lambda: {"mask": 0.5, "box": 0.25, "polygon": 0.25})
    parallel: str = "fsdp"  # "fsdp" (FSDP2 fully_shard) | "ddp" | "none"
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on the CPU) | "bf16" | "fp32"
    activation_checkpointing: bool | None = None  # default: on for CUDA, off on the CPU
    seed: int = 0
    save_every: int = 500  # optimiser steps between checkpoints (and one at the end)
    log_every: int = 1
    keep: int = 2  # step checkpoints kept on disk (the newest)
    save_dtype: str = "fp32"  # dtype of the written model weights
    clip_grad: float = 1.0
    lora_rank: int = 0  # stage 2: > 0 trains LoRA adapters (peft) instead of the full LLM (LLaVA: 128)
    lora_alpha: float | None = None  # default 2 * rank (LLaVA: 256 for rank 128)
    lora_dropout: float = 0.05

    def stage_defaults(self) -> Stage:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be 1 or 2, got {self.stage}")
        return STAGES[self.stage]

    def resolved(self) -> RunConfig:
        """A copy with every stage default filled in and every value checked."""
        st = self.stage_defaults()
        r = dataclasses.replace(
            self,
            lr=st.lr if self.lr is None else self.lr,
            global_batch=st.global_batch if self.global_batch is None else self.global_batch,
            epochs=st.epochs if self.epochs is None else self.epochs,
            warmup_ratio=st.warmup_ratio if self.warmup_ratio is None else self.warmup_ratio,
            region_forms=dict(self.region_forms),
            data=list(self.data),
        )
        if not r.data:
            raise ConfigError("no training data: pass --data FILE.jsonl (or a COCO instances .json)")
        if (r.init is None) == (r.init_config is None):
            raise ConfigError("pass exactly one of --init CHECKPOINT and --init-config CONFIG.json")
        if r.init_config is not None and r.tokenizer is None:
            raise ConfigError("--init-config needs --tokenizer DIR (a directory with tokenizer.json)")
        if r.global_batch < 1 or r.micro_batch < 1:
            raise ConfigError(f"global batch ({r.global_batch}) and micro batch ({r.micro_batch}) must be >= 1")
        if r.parallel not in ("fsdp", "ddp", "none"):
            raise ConfigError(f"parallel must be fsdp, ddp or none, got {r.parallel!r}")
        if r.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {r.precision!r}")
        bad = [k for k in r.region_forms if k not in REGION_FORMS]
        if bad or not r.region_forms or any(v < 0 for v in r.region_forms.values()) or not sum(r.region_forms.values()):
            raise ConfigError(
                f"region_forms must weight {', '.join(REGION_FORMS)} (>= 0, not all 0); got {r.region_forms}"
            )
        if r.lora_rank < 0 or (r.lora_rank and r.stage != 2):
            raise ConfigError(f"LoRA (lora_rank={r.lora_rank}) applies to stage 2 only, where the LLM is trained")
        if r.lora_rank and r.lora_alpha is None:
            r.lora_alpha = 2.0 * r.lora_rank
        if r.save_dtype not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"save_dtype must be fp32, bf16 or fp16, got {r.save_dtype!r}")
        return r

    def trained_modules(self) -> tuple[str, ...]:
        st = self.stage_defaults()
        return (*st.trains, "vision") if self.train_vision else st.trains

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> RunConfig:
        return RunConfig(**d)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def set_trainable(model: nn.Module, modules: tuple[str, ...], lora: bool = False) -> list[str]:
    """requires_grad on exactly the parameters under `modules` (RegionGPT attribute names); with `lora`, the
    LLM's adapters instead of its weights. Returns the trained parameters' names."""
    names = []
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        on = (".lora_A." in name or ".lora_B." in name) if (lora and top == "llm") else top in modules
        p.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise ConfigError(f"no parameter is trained: the model has none under {', '.join(modules)}")
    return names


def lr_lambda(total_steps: int, warmup_ratio: float):
    """Linear warm-up over ceil(ratio * total) steps, then cosine decay to 0 (HF's cosine schedule)."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup  # the first step already uses a non-zero rate
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f
