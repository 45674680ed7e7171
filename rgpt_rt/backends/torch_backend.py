"""The torch backend: the reference model on CPU or CUDA.

Beyond the plain model it keeps three things between calls:
- a per-frame cache (refined map + image embeddings, LRU bounded in bytes), so a new question or new regions
  on the same frame skip preprocessing and the vision tower;
- KV-cache row 0 and what it holds (`kv_prefix`, kept by the generation loop), so a prompt sharing a prefix
  with the previous one (the template head and the image on the same frame, or the earlier turns of a chat)
  only prefills the new part;
- on CUDA, the one-token decode step captured in a CUDA graph per batch size (static KV cache, fixed shapes).
`prefill` / `step` decode one row or several suffixes that share one prefix (describe_many), and pick each
row's next token on the device (rgpt_rt/backends/torch_sampling.py): only token ids reach the host.

The decode step (`decode=`):
- "fused" (default on CUDA): rgpt_rt.model.fused_decode, the native decode ops (fused norm + residual add,
  rotary + KV write, windowed decode attention) and fused q/k/v and gate/up projections;
- "reference": the model's own forward (default on the CPU);
- "compile": the reference step through torch.compile (max-autotune without its own CUDA graphs on CUDA,
  the default inductor mode on the CPU), for comparison.
On CUDA each is replayed as a CUDA graph unless cuda_graphs=False.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import ByteLRU
from .base import KVPrefix

DEFAULT_FRAME_CACHE_BYTES = 256 << 20
DECODE_MODES = ("fused", "reference", "compile")


class TorchBackend:
    name = "torch"

    def __init__(
        self,
        path: str | Path | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        precision: str | None = None,
        model=None,
        frame_cache_bytes: int = DEFAULT_FRAME_CACHE_BYTES,
        prefix_cache: bool = True,
        cuda_graphs: bool = True,
        decode: str | None = None,
    ):
        import torch

        from ..checkpoint import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch sees no CUDA GPU; use device='cpu'")
        if precision not in (None, "fp32", "fp16", "bf16", "int8"):
            raise ValueError(f"precision must be fp32, fp16, bf16 or int8, got {precision!r}")
        self.torch = torch
        self.device = device
        on_gpu = device.startswith("cuda")
        if precision in ("fp32", "fp16", "bf16"):
            dtype = precision
        dtype = dtype or ("fp16" if on_gpu else "fp32")
        self.model = model if model is not None else load_model(path, dtype=dtype, device=device)
        self.precision = precision or dtype
        if precision == "int8":
            from ..model.quant import quantize_decoder_

            quantize_decoder_(self.model)
        self.cfg = self.model.cfg
        self.dtype = self.model.llm.model.embed_tokens.weight.dtype
        self.frames = ByteLRU(frame_cache_bytes)
        self.use_graphs = cuda_graphs and on_gpu
        self.set_decode(decode or ("fused" if on_gpu else "reference"))
        self.kv_prefix = KVPrefix(enabled=prefix_cache)
        # Per KV-cache row: how many leading slots are copies of row 0's (set by prefill_batch); the fused step's
        # attention reads those from row 0, so describe_many's rows share one copy of the prefix.
        self._shared = None

    # ---- vision ----------------------------------------------------------------------------------------

    def preprocess_frame(self, frame: np.ndarray, vision):
        """uint8 [H, W, 3] -> pixels [3, S, S]. On CUDA the frame is uploaded as uint8 (a quarter of the float
        bytes) and the native preprocess_frame runs on the GPU; on the CPU, the native CPU op. Both are
        Pillow-exact, so the pixels are the same. (Masks are resized on the host: they arrive as full-resolution
        floats and shrink about 20x in the resize, so uploading them first would cost more than it saves.)"""
        from ..inputs import preprocess_frame as host

        mode = self.cfg.image_aspect_ratio
        if not self.device.startswith("cuda"):
            return host(frame, vision, mode=mode)
        from ..ops import preprocess_frame as op

        t = self.torch
        with t.inference_mode():
            f = t.from_numpy(np.ascontiguousarray(frame)).to(self.device)
            return op(f, vision.image_size, vision.image_mean, vision.image_std, mode=mode)

    def has_frame(self, key: str | None) -> bool:
        return key is not None and key in self.frames

    def visual_embeds(self, pixels: np.ndarray | None, masks: np.ndarray, frame_key: str | None = None, depth=None):
        """The table [T + N (+ N), D]: image embeds, region embeds, and with a depth image (its pixels, from
        preprocess_frame) the regions' depth embeds."""
        t = self.torch
        with t.inference_mode():
            hit = self.frames.get(frame_key) if frame_key is not None else None
            if hit is None:
                if pixels is None:
                    raise ValueError("frame not in the cache and no pixels given")
                px = pixels if isinstance(pixels, t.Tensor) else t.from_numpy(pixels)
                refined = self.model.encode_image(px.to(self.device, self.dtype)[None])[0]
            else:
                refined, image = hit
            img_feats, reg_feats = self.model.pool(refined, t.from_numpy(masks).to(self.device))
            if hit is None:
                image, regions = self.model.connect(img_feats, reg_feats)
                if frame_key is not None:
                    nbytes = refined.numel() * refined.element_size() + image.numel() * image.element_size()
                    self.frames.put(frame_key, (refined, image), nbytes)
            else:
                regions = self.model.connect_regions(reg_feats)
            parts = [image, regions]
            if depth is not None:
                dpx = depth if isinstance(depth, t.Tensor) else t.from_numpy(depth)
                mask_t = t.from_numpy(masks).to(self.device)
                parts.append(self.model.depth_embeds(dpx.to(self.device, self.dtype), mask_t).to(image.dtype))
            return t.cat(parts), image.shape[0]

    # ---- decoder ----------------------------------------------------------------------------------------

    def reserve(self, max_len: int, batch: int = 1) -> None:
        llm = self.model.llm
        ctx = self.cfg.llm.max_position_embeddings
        if max_len > ctx:
            raise ValueError(f"{max_len} positions exceed the model's context {ctx}")
        if max_len > llm.max_seq or batch > llm.max_batch:
            # Positions grow in steps so that a run of similar prompts allocates once; rows grow to what is asked.
            seq = llm.max_seq if max_len <= llm.max_seq else min(max(max_len, 2 * llm.max_seq, 256), ctx)
            # Forget everything that points into the old cache first: a failed grow (out of memory, an
            # interrupt) must not leave captured graphs or claimed slots behind.
            self.kv_prefix.clear()
            self._graphs, self._shared = {}, None
            llm.setup_caches(max(batch, llm.max_batch, 1), seq, dtype=self.dtype, device=self.device)

    def sampler(self, gen, rows: int):
        from .torch_sampling import TorchSampler

        return TorchSampler(gen, rows, self.cfg.llm.vocab_size, self.device)

    def prefill(self, prefix, start, suffixes, table, sampler, want_logits=False):
        """Row 0: prefix[start:] at positions start..P-1 (the cache holds the rest). A single row with no
        suffix picks from the prefix's last token; otherwise rows 1..B-1 get copies of the prefix KV and the
        suffixes run as one right-padded batch at positions P.. (decode_attention reads the copies from row 0)."""
        from ..model.generate import prefill

        t = self.torch
        llm = self.model.llm
        b, p = len(suffixes), len(prefix)
        with t.inference_mode():
            if start < p:
                ids = t.tensor([prefix[start:]], device=self.device)
                pos = t.arange(start, p, device=self.device)[None]
                hidden = llm(self.model.embed(ids, table[None]), pos, logits=False)
            if b == 1 and not suffixes[0]:
                logits = llm.head(hidden[:, -1])  # [1, V]
            else:
                for layer in llm.model.layers:
                    cache = layer.self_attn.kv_cache
                    cache.k[1:b, :, :p] = cache.k[0:1, :, :p]
                    cache.v[1:b, :, :p] = cache.v[0:1, :, :p]
                if self._shared is None:  # once per cache size (reserve drops it)
                    self._shared = t.zeros(llm.max_batch, dtype=t.long, device=self.device)
                self._shared.fill_(p)
                longest = max(len(s) for s in suffixes)
                padded = t.zeros(b, longest, dtype=t.long, device=self.device)
                for i, s in enumerate(suffixes):
                    padded[i, : len(s)] = t.tensor(s, device=self.device)
                embeds = self.model.embed(padded, table[None].expand(b, -1, -1))
                lengths = t.tensor([len(s) for s in suffixes], device=self.device)
                logits = prefill(llm, embeds, lengths, start=t.full((b,), p, device=self.device))
            tokens = sampler.pick(logits).tolist()
        return tokens, (logits.float().cpu().numpy() if want_logits else None)

    def step(self, tokens, positions, sampler, want_logits=False):
        """Finished rows (None) feed a dummy token at their own last position (their output is ignored)."""
        t = self.torch
        self._check_positions(positions)
        with t.inference_mode():
            logits = self._decode([0 if tok is None else tok for tok in tokens], positions)
            picked = sampler.pick(logits).tolist()
            host = logits.float().cpu().numpy() if want_logits else None
        return [None if tok is None else nxt for tok, nxt in zip(tokens, picked)], host

    def set_decode(self, mode: str) -> None:
        """Switch the decode step (see the module docstring); captured graphs are dropped."""
        if mode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {mode!r}")
        self.decode = mode
        self._graphs = {}
        self._step_fn = self._make_step()

    def _make_step(self):
        """The decode step tok [B], pos [B] -> logits [B, V] for self.decode."""
        llm = self.model.llm
        if self.decode == "fused":
            from ..model.fused_decode import fuse_projections_, fused_decode_step

            fuse_projections_(llm)

            def fused(tok, pos):
                shared = None if self._shared is None else self._shared[: tok.shape[0]]
                return fused_decode_step(llm, tok, pos, shared)

            return fused
        # A captured or compiled step attends over the whole (masked) cache: fixed shapes, no host read-back.
        static = self.use_graphs or self.decode == "compile"

        def reference(tok, pos):
            return llm(llm.embed(tok[:, None]), pos[:, None], static=static)[:, 0]

        if self.decode == "reference":
            return reference
        mode = "max-autotune-no-cudagraphs" if self.device.startswith("cuda") else None
        return self.torch.compile(reference, mode=mode, dynamic=False)

    def _check_positions(self, positions: list[int]) -> None:
        llm = self.model.llm
        if len(positions) > llm.max_batch or max(positions) >= llm.max_seq or min(positions) < 0:
            raise ValueError(
                f"decode rows {len(positions)} at positions {min(positions)}..{max(positions)} do not fit the KV "
                f"cache ({llm.max_batch} x {llm.max_seq}); call reserve() first"
            )

    def _decode(self, tokens: list[int], positions: list[int]):
        """tokens [B], positions [B] -> logits [B, V]; on CUDA through a captured graph per batch size, fed by
        one copy from pinned host memory (tokens and positions together)."""
        t = self.torch
        host = t.tensor([tokens, positions], dtype=t.long)
        if not self.use_graphs:
            io = host.to(self.device)
            return self._step_fn(io[0], io[1])
        b = len(tokens)
        if b not in self._graphs:
            self._graphs[b] = self._capture(b)
        graph, static_io, pinned, copied, out = self._graphs[b]
        copied.synchronize()  # the previous copy out of `pinned` has finished before it is overwritten
        pinned.copy_(host)
        static_io.copy_(pinned, non_blocking=True)
        copied.record()
        graph.replay()
        return out

    def _capture(self, b: int):
        t = self.torch
        llm = self.model.llm
        # Warm-up and capture write the KV slot of their position: use the last slot, which every later use
        # writes before it reads.
        static_io = t.zeros(2, b, dtype=t.long, device=self.device)  # [tokens; positions]
        static_io[1].fill_(llm.max_seq - 1)
        pinned = t.empty(2, b, dtype=t.long, pin_memory=True)
        copied = t.cuda.Event()

        def step():
            return self._step_fn(static_io[0], static_io[1])

        side = t.cuda.Stream()
        side.wait_stream(t.cuda.current_stream())
        with t.cuda.stream(side):
            for _ in range(2):
                step()
        t.cuda.current_stream().wait_stream(side)
        graph = t.cuda.CUDAGraph()
        with t.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may preprocess meanwhile
            out = step()
        return graph, static_io, pinned, copied, out
