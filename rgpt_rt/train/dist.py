"""torch.distributed for one process or many: process group, FSDP2 / DDP wrapping, memory, reductions.

A run always has a process group (a size-1 group over an in-memory store when not launched by torchrun),
so one code path serves one CPU and a GPU cluster. FSDP2 (`fully_shard`) shards each LLaMA decoder layer and
each vision layer as its own unit and the rest (embeddings, head, refinement, connectors) as the root unit:
parameters, gradients and optimizer state are sharded across ranks; frozen parameters are sharded too.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        if "MASTER_ADDR" in os.environ and "RANK" in os.environ:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return Dist(dist.get_rank(), dist.get_world_size(), local, device)


def wrap(model: nn.Module, mode: str, d: Dist, bf16: bool = False) -> nn.Module:
    """model: the TrainModel (root). mode: "fsdp" | "ddp" | "none" (only for one rank).

    bf16 with FSDP2: parameters are all-gathered in bf16 (half the traffic and the unsharded-layer memory),
    gradients reduced in fp32, the sharded master weights and optimizer state stay fp32 (torchtitan's policy).
    """
    model.to(d.device)
    if mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(d.device.type, (d.world,))
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        kw = {"mesh": mesh, **({"mp_policy": mp} if mp else {})}
        inner = model.model
        # Vision layers past the selected one never run: they stay in the root unit (a unit that never runs
        # forward breaks FSDP2's gradient accumulation in bf16).
        used = inner.vision.encoder.layers[: inner.cfg.vision.layers_used]
        for layer in [*inner.llm.model.layers, *used]:
            fully_shard(layer, **kw)
        fully_shard(model, **kw)
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.local_rank] if d.device.type == "cuda" else None
        # A linear region connector gets no gradient in a micro-batch without regions.
        unused = model.model.region_connector is not None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
    if d.world > 1:
        raise ValueError("parallel='none' runs on one rank only; use fsdp or ddp under torchrun")
    return model


def gradient_sync(model: nn.Module, on: bool):
    """Context for one micro-batch's backward: skip the gradient all-reduce / reduce-scatter unless `on`."""
    import contextlib

    if hasattr(model, "no_sync"):  # DDP
        return contextlib.nullcontext() if on else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(on)
    return contextlib.nullcontext()


def all_sum(values: list[float], d: Dist) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    if d.world > 1:
        dist.all_reduce(t)
    return t.tolist()


def peak_memory_mb(d: Dist) -> float:
    """Peak allocated GPU memory on CUDA; peak resident set size of the process on the CPU."""
    if d.device.type == "cuda":
        return torch.cuda.max_memory_allocated(d.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def gather_objects(obj, d: Dist) -> list:
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
