"""The onnx backend: the engine directory's ONNX graphs on the CPU with ONNX Runtime (no torch).

vision graph -> native region_pool (rgpt_rt.ops, C++) -> connector graph -> decoder graph with the KV cache
held as the decoder's present tensors between steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..engine import read_manifest
from ..engine.manifest import REBUILD
from ..errors import EngineError
from ..ops import region_pool


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
        self._past: list[np.ndarray] = []

    def has_frame(self, key: str | None) -> bool:
        return False  # no per-frame cache in this backend yet

    def visual_embeds(self, pixels: np.ndarray, masks: np.ndarray, frame_key: str | None = None) -> tuple[Any, int]:
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

    def _run(self, ids: list[int], table: np.ndarray, start: int, past: list[np.ndarray] | None) -> np.ndarray:
        feeds = {
            "input_ids": np.asarray([ids], np.int64),
            "mm_table": table,
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
        }
        for i in range(self.cfg.llm.num_layers):
            feeds[f"past_key_{i}"] = past[2 * i] if past else self._empty
            feeds[f"past_value_{i}"] = past[2 * i + 1] if past else self._empty
        out = self.decoder.run(None, feeds)
        self._past = out[1:]
        return out[0][0].astype(np.float32)

    def prefill(self, ids: list[int], table: Any, keys: list | None = None) -> np.ndarray:
        return self._run(ids, np.asarray(table, self.dec_float)[None], 0, None)

    def step(self, token: int, pos: int) -> np.ndarray:
        return self._run([token], self._dummy_table, pos, self._past)
