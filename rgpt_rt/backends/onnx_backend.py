"""The onnx backend: the engine directory's ONNX graphs on the CPU with ONNX Runtime (no torch).

vision graph -> native region_pool (rgpt_rt.ops, C++) -> connector graph -> decoder graph with the KV cache
held as the decoder's present tensors between steps, one list per row; a later prompt that shares a prefix
with row 0 reuses its past, sliced to the shared length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..engine import read_manifest
from ..engine.manifest import REBUILD
from ..errors import EngineError, InputError
from ..inputs import preprocess_frame
from ..ops import region_pool
from ..sampling import HostSampler
from .base import KVPrefix


class OnnxBackend:
    name = "onnx"

    def __init__(self, engine_dir: str | Path, device: str = "cpu", verify: bool = True, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("backend='onnx' needs onnxruntime (pip install 'rgpt_rt[onnx]')") from exc
        if device != "cpu":
            raise ValueError("the onnx backend runs on the CPU; for a GPU use backend='trt' (or 'torch')")
        self.manifest = read_manifest(engine_dir, verify=verify)
        self.cfg = self.manifest.cfg
        self.device = device
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # ORT's pool would otherwise spin between runs and starve the native ops' OpenMP threads, which run
        # in between (preprocess, region_pool) on the same cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(graph: str):
            path = self.manifest.file(self.manifest.graph(graph)["onnx"])
            try:
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT raises its own types for truncated or corrupt graphs
                raise EngineError(f"{path}: ONNX Runtime cannot load the {graph} graph ({exc}); {REBUILD}") from None
            self.manifest.check_session(graph, path, sess)  # a swapped or foreign graph: EngineError naming it
            return sess

        self.vision, self.connector, self.decoder = session("vision"), session("connector"), session("decoder")
        self.float = np.float16 if self.manifest.data.get("graph_precision", "fp32") == "fp16" else np.float32
        self.dec_float = np.float16 if self.manifest.precision == "fp16" else np.float32
        llm = self.cfg.llm
        self._empty = np.zeros((1, llm.num_kv_heads, 0, llm.head_dim), self.dec_float)
        self._dummy_table = np.zeros((1, 1, llm.hidden_size), self.dec_float)
        self._rows: list[list[np.ndarray]] = [[]]  # per KV-cache row: the decoder's present tensors
        self.kv_prefix = KVPrefix()

    def preprocess_frame(self, frame: np.ndarray, vision) -> np.ndarray:
        return preprocess_frame(frame, vision, mode=self.cfg.image_aspect_ratio)

    def has_frame(self, key: str | None) -> bool:
        return False  # no per-frame cache in this backend yet

    def visual_embeds(
        self, pixels: np.ndarray, masks: np.ndarray, frame_key: str | None = None, depth: np.ndarray | None = None
    ) -> tuple[Any, int]:
        if depth is not None:
            raise InputError(
                "depth maps are not supported by the onnx backend yet (its engine directory has no depth graph); "
                "run SpatialRGPT with depth on the torch backend: Runtime.from_pretrained(checkpoint, backend='torch')"
            )
        refined = self.vision.run(None, {"pixels": pixels[None].astype(self.float)})[0][0]  # [C, H, W]
        image_feats, region_feats = region_pool(
            np.ascontiguousarray(refined), masks, self.cfg.region.image_grid, self.cfg.region.mask_eps
        )
        image, regions = self.connector.run(
            None, {"image_features": image_feats.astype(self.float), "region_features": region_feats.astype(self.float)}
        )
        return np.concatenate([image, regions]).astype(self.dec_float), image.shape[0]

    def reserve(self, max_len: int, batch: int = 1) -> None:
        if max_len > self.cfg.llm.max_position_embeddings:
            raise ValueError(f"{max_len} positions exceed the model's context {self.cfg.llm.max_position_embeddings}")

    def sampler(self, gen, rows: int) -> HostSampler:
        return HostSampler(gen, rows)

    def _run(self, ids: list[int], table: np.ndarray, start: int, past: list[np.ndarray] | None):
        """ids at positions start.. after `past` (KV of positions 0..start-1) -> (logits [V] f32, presents)."""
        feeds = {
            "input_ids": np.asarray([ids], np.int64),
            "mm_table": table,
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
        }
        for i in range(self.cfg.llm.num_layers):
            feeds[f"past_key_{i}"] = past[2 * i] if past else self._empty
            feeds[f"past_value_{i}"] = past[2 * i + 1] if past else self._empty
        out = self.decoder.run(None, feeds)
        return out[0][0].astype(np.float32), out[1:]

    def prefill(self, prefix, start, suffixes, table, sampler, want_logits=False):
        """Each row's KV is its own list of present tensors; rows share the prefix's arrays (never written in
        place). The held row 0 is reused by slicing its past to `start` positions."""
        table = np.asarray(table, self.dec_float)[None]
        p = len(prefix)
        past = [np.ascontiguousarray(a[:, :, :start]) for a in self._rows[0]] if start else None
        if start < p:
            logits, past = self._run(prefix[start:], table, start, past)
        if len(suffixes) == 1 and not suffixes[0]:
            rows, all_logits = [past], logits[None]
        else:
            runs = [self._run(s, table, p, past) for s in suffixes]
            rows, all_logits = [r[1] for r in runs], np.stack([r[0] for r in runs])
        self._rows = rows
        return sampler.pick(all_logits), (all_logits if want_logits else None)

    def step(self, tokens, positions, sampler, want_logits=False):
        logits = np.zeros((len(tokens), self.cfg.llm.vocab_size), np.float32)
        for b, (tok, pos) in enumerate(zip(tokens, positions)):
            if tok is not None:
                logits[b], self._rows[b] = self._run([tok], self._dummy_table, pos, self._rows[b])
        return sampler.pick(logits, [tok is not None for tok in tokens]), (logits if want_logits else None)
