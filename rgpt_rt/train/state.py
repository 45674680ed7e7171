"""Checkpoints: the model as a llava-layout checkpoint, the training state beside it, written atomically.

    OUTPUT/checkpoints/step_0000100/     config.json + model.safetensors + tokenizer files  (Runtime / build)
                                         trainer.json  (step, epoch, data position, scheduler, run config)
                                         optimizer/    (torch.distributed.checkpoint, sharded per rank)
                                         rng/rank{r}.json (torch, CUDA, numpy and Python RNG streams)
                                         loss.png      (when matplotlib is installed)
    OUTPUT/checkpoints/latest            name of the newest complete checkpoint
Every rank writes into step_N.tmp; rank 0 renames it to step_N and then rewrites `latest` (os.replace), so a
kill at any moment leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from ..checkpoint import save_checkpoint
from ..checkpoint.loader import DTYPES
from ..model.regiongpt import RegionGPT
from .dist import Dist
from .init import TOKENIZER_FILES
from .lora import is_adapter, merged


def latest(output: Path) -> Path | None:
    marker = output / "checkpoints" / "latest"
    if not marker.is_file():
        return None
    path = output / "checkpoints" / marker.read_text().strip()
    return path if (path / "trainer.json").is_file() else None


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    npy = np.random.get_state()  # noqa: NPY002 - the global stream user code may draw from
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npy[0], npy[1].tolist(), int(npy[2]), int(npy[3]), float(npy[4])],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(s["torch"], dtype=torch.uint8))
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(x, dtype=torch.uint8) for x in s["cuda"]])
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))  # noqa: NPY002


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the unsharded fp32 state of the RegionGPT inside the TrainModel (on rank 0's CPU; empty
    elsewhere under FSDP)."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}


def save(
    output: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    trainer: dict[str, Any],
    cfg,
    tokenizer_dir: Path,
    save_dtype: str,
    d: Dist,
    keep: int,
    plot=None,
    lora_scale: float | None = None,
) -> Path:
    ckpts = output / "checkpoints"
    final = ckpts / f"step_{step:07d}"
    tmp = ckpts / f"step_{step:07d}.tmp"
    if d.main:
        shutil.rmtree(tmp, ignore_errors=True)  # a save that was killed half-way
        (tmp / "rng").mkdir(parents=True)
    dist.barrier()
    state = full_model_state(model)
    optim = get_optimizer_state_dict(model, optimizer)
    dcp.save({"optimizer": optim}, checkpoint_id=str(tmp / "optimizer"))
    (tmp / "rng" / f"rank{d.rank}.json").write_text(json.dumps(_rng_state()))
    if d.main:
        if lora_scale is not None:  # the plain model gets the merged weights; the adapters are kept as they are
            from safetensors.torch import save_file

            adapters = {k: v.contiguous() for k, v in state.items() if is_adapter(k)}
            (tmp / "lora").mkdir()
            save_file(adapters, str(tmp / "lora" / "adapters.safetensors"), metadata={"format": "pt"})
            state = merged(state, lora_scale)
        with torch.device("meta"):
            shell = RegionGPT(cfg)
        shell.load_state_dict(state, strict=True, assign=True)
        save_checkpoint(shell, tmp, dtype=DTYPES[save_dtype])
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, tmp / name)
        info = {**trainer, "step": step, "scheduler": scheduler.state_dict(), "world": d.world}
        (tmp / "trainer.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if plot is not None:
            plot(tmp / "loss.png")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        marker = ckpts / "latest.tmp"
        marker.write_text(final.name + "\n")
        os.replace(marker, ckpts / "latest")
        old = sorted(p for p in ckpts.glob("step_*") if not p.name.endswith(".tmp") and p != final)
        for p in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    dist.barrier()
    return final


def load_training_state(path: Path, model: torch.nn.Module, optimizer, scheduler, d: Dist) -> dict[str, Any]:
    """Collective: restore optimizer, scheduler and this rank's RNG streams from checkpoint `path`."""
    info = json.loads((path / "trainer.json").read_text())
    optim = get_optimizer_state_dict(model, optimizer)
    state = {"optimizer": optim}
    dcp.load(state, checkpoint_id=str(path / "optimizer"))
    set_optimizer_state_dict(model, optimizer, state["optimizer"])
    scheduler.load_state_dict(info["scheduler"])
    rng = path / "rng" / f"rank{d.rank}.json"
    if rng.is_file():
        _set_rng_state(json.loads(rng.read_text()))
    return info
