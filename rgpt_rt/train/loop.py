"""The training loop: one global batch per optimiser step on any number of ranks, resumable to the sample.

Data order: an epoch is a seeded permutation of every sample slot (all sources concatenated); step s takes
the next `global_batch` slots and rank r the slots r, r + W, ... of them, split into micro-batches. Each
sample's random choices (task, vocabulary, region form) come from a generator seeded by (seed, epoch, slot),
so the data of step s is a function of s alone: a resume, or another rank count, sees the same samples.
The loss is the mean over every answer token of the global batch: each micro-batch's summed loss is scaled
by world / (answer tokens of the global batch), and the ranks' gradients are averaged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, RgptError
from ..tokenizer import PromptTokenizer
from .coco import CocoSource
from .data import IGNORE, Encoded, Encoder, JsonlSource
from .dist import Dist, all_sum, gather_objects, gradient_sync, init_distributed, peak_memory_mb, wrap
from .init import add_region_token, grow_vocab, load_start_model, read_start_config
from .lora import add_lora
from .model import TrainModel, collate
from .progress import Progress
from .recipe import RunConfig, lr_lambda, set_trainable
from .state import latest, load_training_state, save

# Fields a resume must share with the run it continues (the rest, e.g. save_every, may change).
SAME_RUN = tuple(
    "stage data global_batch seed lr epochs max_steps warmup_ratio region_forms max_seq_len train_vision lora_rank "
    "lora_alpha lora_dropout".split()
)


class Catalog:
    """Every source's samples as one index space."""

    def __init__(self, paths: list[str], image_root: str | None, log):
        self.sources = []
        for p in paths:
            src = CocoSource(p, image_root) if p.endswith(".json") else JsonlSource(p, image_root)
            if src.num_bad:
                log(f"{p}: {src.num_bad} bad samples skipped; first problems:\n  " + "\n  ".join(src.bad[:5]))
            self.sources.append(src)
        self.starts = [0]
        for s in self.sources:
            self.starts.append(self.starts[-1] + len(s))
        self.num_bad = sum(s.num_bad for s in self.sources)

    def __len__(self) -> int:
        return self.starts[-1]

    def get(self, i: int, rng: random.Random):
        k = max(j for j, s in enumerate(self.starts[:-1]) if s <= i)
        return self.sources[k].get(i - self.starts[k], rng)


class StepData:
    """The samples of each step for one rank, with the failures counted (and the first ones named)."""

    def __init__(self, catalog: Catalog, encoder: Encoder, rc: RunConfig, d: Dist):
        self.catalog, self.encoder, self.rc, self.d = catalog, encoder, rc, d
        self.steps_per_epoch = len(catalog) // rc.global_batch
        self._perm: tuple[int, list[int]] | None = None

    def slots(self, step: int) -> tuple[int, list[int]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.rc.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.catalog), generator=gen).tolist())
        g = self.rc.global_batch
        return epoch, self._perm[1][k * g : (k + 1) * g][self.d.rank :: self.d.world]

    def __call__(self, step: int) -> tuple[list[Encoded], list[str]]:
        """This rank's encoded samples of `step`, and the problems of those that could not be read."""
        epoch, mine = self.slots(step)
        out, problems = [], []
        for i in mine:
            rng = random.Random(f"{self.rc.seed}:{epoch}:{i}")
            try:
                out.append(self.encoder(self.catalog.get(i, rng), rng))
            except (RgptError, OSError) as exc:
                problems.append(str(exc))
        return out, problems


def _log(d: Dist):
    return (lambda msg: print(msg, file=sys.stderr, flush=True)) if d.main else (lambda msg: None)


def setup_model(rc: RunConfig, resume_from: Path | None, d: Dist, log):
    """-> (RegionGPT in fp32 on the CPU, tokenizer directory). Rank 0 writes the tokenizer; all ranks read it.

    A resume continues from the checkpoint's weights; with LoRA, from the start's base weights (the LLM's are
    frozen) plus the checkpoint's adapters and other trained tensors, so nothing is merged and unmerged."""
    from_ckpt = resume_from is not None and not rc.lora_rank
    init = str(resume_from) if from_ckpt else rc.init
    cfg = read_start_config(init, None if from_ckpt else rc.init_config)
    tok_dir = Path(rc.output) / "tokenizer"
    if d.main:
        size = add_region_token(Path(resume_from or rc.tokenizer or rc.init), tok_dir, cfg.region_token, log)
        (tok_dir / "size").write_text(str(size))
    torch.distributed.barrier()
    size = int((tok_dir / "size").read_text())
    model = load_start_model(cfg, init, rc.seed, log)
    model = grow_vocab(model, size, log)
    if rc.lora_rank:
        add_lora(model.llm, rc.lora_rank, rc.lora_alpha, rc.lora_dropout, rc.seed)
        if resume_from is not None:
            from safetensors.torch import load_file

            from ..checkpoint import load_model

            state = {k: v for k, v in load_model(resume_from).state_dict().items() if not k.startswith("llm.")}
            state.update(load_file(str(resume_from / "lora" / "adapters.safetensors")))
            unexpected = model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise ConfigError(f"{resume_from} has tensors this LoRA run does not: {unexpected[:5]}")
    return model, tok_dir


def run(rc: RunConfig) -> dict[str, Any]:
    """Train; returns the run summary (also written to OUTPUT/summary.json)."""
    return train(rc)[0]


def train(rc: RunConfig) -> tuple[dict[str, Any], torch.nn.Module]:
    """Train; returns the summary and the (wrapped) TrainModel as it is after the last step."""
    rc = rc.resolved()
    d = init_distributed()
    log = _log(d)
    out = Path(rc.output)
    out.mkdir(parents=True, exist_ok=True)
    resume_from = latest(out)
    if resume_from is not None:
        done = json.loads((resume_from / "trainer.json").read_text())
        changed = [k for k in SAME_RUN if done["config"][k] != rc.to_json()[k]]
        if changed:
            raise ConfigError(f"{out} holds a run with different {', '.join(changed)}; use a new --output")
        log(f"resuming from {resume_from}")
    elif d.main:
        rc.save(out / "run_config.json")

    catalog = Catalog(rc.data, rc.image_root, log)
    if len(catalog) < rc.global_batch:
        raise ConfigError(f"the data has {len(catalog)} valid samples, fewer than one global batch ({rc.global_batch})")
    if rc.global_batch % d.world:
        raise ConfigError(f"global batch {rc.global_batch} is not a multiple of the {d.world} ranks")

    model, tok_dir = setup_model(rc, resume_from, d, log)
    cfg = model.cfg
    trained = set_trainable(model, rc.trained_modules(), lora=bool(rc.lora_rank))
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"stage {rc.stage}: training {', '.join(rc.trained_modules())} ({n_trained / 1e6:.2f}M parameters, "
        f"{len(trained)} tensors{f', LoRA rank {rc.lora_rank}' if rc.lora_rank else ''}) on {d.world} "
        f"rank(s), parallel={rc.parallel}"
    )
    on_gpu = d.device.type == "cuda"
    ac = rc.activation_checkpointing if rc.activation_checkpointing is not None else on_gpu
    bf16 = rc.precision == "bf16" or (rc.precision == "auto" and on_gpu)
    tm = wrap(TrainModel(model, activation_checkpointing=ac), rc.parallel, d, bf16=bf16)
    params = [p for p in tm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=rc.lr, betas=(0.9, 0.999), weight_decay=0.0)

    tokenizer = PromptTokenizer(tok_dir, cfg)
    data = StepData(catalog, Encoder(tokenizer, cfg, rc.region_forms, rc.max_seq_len), rc, d)
    total = rc.max_steps or max(1, math.ceil(rc.epochs * data.steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, rc.warmup_ratio))
    start = 0
    if resume_from is not None:
        start = load_training_state(resume_from, tm, optimizer, scheduler, d)["step"]

    per_rank = rc.global_batch // d.world
    accum = math.ceil(per_rank / rc.micro_batch)
    log(
        f"{len(catalog)} samples, {data.steps_per_epoch} steps per epoch, {total} steps; global batch "
        f"{rc.global_batch} = {d.world} ranks x {accum} micro-batches of <= {rc.micro_batch}"
    )
    progress = Progress(out, start, total, d.main, rc.log_every)
    autocast = torch.autocast(d.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    kill_at = int(os.environ.get("RGPT_TRAIN_SIGKILL_AT_STEP", "0"))  # test hook: a real SIGKILL mid-run
    last_good: Encoded | None = None
    failed, seen_problems = 0, []  # samples of this rank that could not be read (counted, the first named)
    rates = []

    def checkpoint(step: int) -> None:
        trainer = {"config": rc.to_json(), "epoch": step // data.steps_per_epoch, "data_step": step}
        lora_scale = rc.lora_alpha / rc.lora_rank if rc.lora_rank else None
        save(
            out,
            step,
            tm,
            optimizer,
            scheduler,
            trainer,
            cfg,
            tok_dir,
            rc.save_dtype,
            d,
            rc.keep,
            progress.plot,
            lora_scale,
        )

    tm.train()
    # The next step's samples are read and preprocessed on a thread while this step computes (image decoding
    # and the native preprocessing ops release the GIL). One worker keeps the reads in step order.
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(data, start) if start < total else None
    for step in range(start, total):
        t0 = time.perf_counter()
        items, problems = pending.result()
        for msg in problems[: max(0, 5 - failed)]:  # the first few are named on every rank
            print(f"rank {d.rank}: skipped a sample: {msg}", file=sys.stderr, flush=True)
        failed += len(problems)
        seen_problems += problems[: 20 - len(seen_problems)]
        pending = prefetch.submit(data, step + 1) if step + 1 < total else None
        last_good = items[-1] if items else last_good
        if last_good is None:
            raise RgptError(f"rank {d.rank}: no sample of step {step} could be read: {problems[:3]}")
        # Every rank runs `accum` forwards (FSDP's collectives must pair up); an empty slot reruns a sample
        # with weight 0.
        chunks = [(items[i : i + rc.micro_batch], 1.0) for i in range(0, len(items), rc.micro_batch)]
        chunks += [([last_good], 0.0)] * (accum - len(chunks))
        local_tokens = sum(sum(x != IGNORE for x in e.labels) for e in items)
        global_tokens, _ = all_sum([local_tokens, 0.0], d)
        loss_sum = torch.zeros((), dtype=torch.float64)
        seq_tokens = 0
        for a, (mb, weight) in enumerate(chunks):
            batch = collate(mb)
            seq_tokens += batch["tokens"] if weight else 0
            with gradient_sync(tm, a == len(chunks) - 1), autocast:
                loss, _ = tm(
                    batch["pixels"].to(d.device),
                    batch["masks"],
                    batch["ids"].to(d.device),
                    batch["labels"].to(d.device),
                )
                (loss * (weight * d.world / max(global_tokens, 1.0))).backward()
            loss_sum += loss.detach().double().cpu() * weight
        grad_norm = torch.nn.utils.clip_grad_norm_(params, rc.clip_grad)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total_loss, tokens, all_failed = all_sum([float(loss_sum), seq_tokens, failed], d)
        dt = time.perf_counter() - t0
        rates.append(tokens / dt)
        progress.log(
            {
                "step": step + 1,
                "loss": total_loss / max(global_tokens, 1.0),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "answer_tokens": int(global_tokens),
                "tokens": int(tokens),
                "tokens_per_s": tokens / dt,
                "step_s": dt,
                "skipped": int(all_failed) + catalog.num_bad,
                "peak_mem_mb": peak_memory_mb(d),
            }
        )
        if (step + 1) % rc.save_every == 0 or step + 1 == total:
            checkpoint(step + 1)
        if kill_at and step + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    progress.close()
    prefetch.shutdown()
    mem = gather_objects(peak_memory_mb(d), d)
    summary = {
        "steps": total,
        "resumed_from": start,
        "world": d.world,
        "peak_mem_mb_per_rank": mem,
        "tokens_per_s_mean": sum(rates) / max(len(rates), 1),
        "bad_lines": catalog.num_bad,
        "skipped_samples": int(all_sum([failed], d)[0]),
        "trained_parameters": n_trained,
        "checkpoint": str(latest(out)),
        "problems": seen_problems[:5],
    }
    if d.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(json.dumps(summary))
    return summary, tm
