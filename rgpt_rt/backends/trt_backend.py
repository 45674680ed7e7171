"""The trt backend: TensorRT engines from an engine directory, CUDA memory and streams via cuda-python.

Same I/O contract as the onnx backend (the engines are built from the same ONNX graphs). Everything stays on
the device between stages: pixels -> vision engine -> region_pool (rgpt_rt.ops, on this stream) ->
connector engine -> the multimodal table, which the decoder reads in place. Each KV-cache row lives in two sets
of device buffers (past and present swap roles each step), so a decode step copies nothing but its token id
in and its logits out. Rows of a batch (describe_many) start from copies of row 0's prefix and decode one after
another; a prompt that shares a prefix with row 0 keeps that part (repacked to the shorter length). Imported
only when backend="trt" is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..engine import read_manifest
from ..errors import InputError
from ..inputs import preprocess_frame
from ..ops import DeviceTensor, region_pool_device, region_pool_workspace_bytes
from ..sampling import HostSampler
from .base import KVPrefix

_NP = {"fp32": np.float32, "fp16": np.float16}


def _ok(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: CUDA error {int(err)}")
    return rest[0] if len(rest) == 1 else (rest or None)


class _Buffers:
    def __init__(self, cudart):
        self.cudart, self.ptrs = cudart, []

    def alloc(self, nbytes: int) -> int:
        ptr = _ok(self.cudart.cudaMalloc(max(int(nbytes), 256)), "cudaMalloc")
        self.ptrs.append(ptr)
        return int(ptr)

    def free(self) -> None:
        for p in self.ptrs:
            self.cudart.cudaFree(p)
        self.ptrs = []


class TrtBackend:
    name = "trt"
    device = "cuda"

    def __init__(self, engine_dir: str | Path, verify: bool = True):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise ImportError("backend='trt' needs TensorRT and cuda-python (pip install 'rgpt_rt[trt]')") from exc
        self.trt, self.cudart = trt, cudart
        self.manifest = read_manifest(engine_dir, verify=verify)
        props = _ok(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        self.manifest.check_trt(trt.__version__, f"sm_{props.major}{props.minor}")
        self.cfg = self.manifest.cfg
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engines, self.ctx = {}, {}
        for g in ("vision", "connector", "decoder"):
            blob = self.manifest.file(self.manifest.graph(g)["engine"]).read_bytes()
            engine = runtime.deserialize_cuda_engine(blob)
            if engine is None:
                raise RuntimeError(f"TensorRT could not load {g}.engine; rebuild with python -m rgpt_rt.build")
            self.engines[g], self.ctx[g] = engine, engine.create_execution_context()
        self.stream = _ok(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.kv_prefix = KVPrefix()
        self._alloc_buffers()

    # ---- memory ----------------------------------------------------------------------------------------

    def _alloc_buffers(self) -> None:
        cfg, llm = self.cfg, self.cfg.llm
        self.vis_dtype = _NP[self.manifest.data.get("graph_precision", "fp32")]
        self.dec_dtype = np.float16 if self.manifest.precision == "fp16" else np.float32
        vb, db = np.dtype(self.vis_dtype).itemsize, np.dtype(self.dec_dtype).itemsize
        s, c, hw = cfg.vision.image_size, cfg.vision.hidden_size, cfg.refined_size
        self.max_regions = 64
        self.ctx_len = llm.max_position_embeddings
        self.mm_rows = cfg.num_image_tokens + self.max_regions
        b = self.buf = _Buffers(self.cudart)
        self.d_pixels = b.alloc(3 * s * s * vb)
        self.d_refined = b.alloc(c * hw * hw * vb)
        self.d_masks = b.alloc(self.max_regions * s * s * 4)
        g = cfg.region.image_grid
        self.d_img_feat, self.d_reg_feat = b.alloc(g * g * c * vb), b.alloc(self.max_regions * c * vb)
        self.d_table = b.alloc(self.mm_rows * llm.hidden_size * db)
        self.d_ids, self.d_pos = b.alloc(self.ctx_len * 8), b.alloc(self.ctx_len * 8)
        self.d_logits = b.alloc(llm.vocab_size * 4)
        self.kv_item = db
        self.kv = [self._kv_set()]  # per row: its two buffer sets
        # Per row: (the set holding its past, the positions it holds), replaced by one assignment so that an
        # exception can never leave a row pointing at one set with the other's length.
        self.state: list[tuple[int, int]] = [(0, 0)]
        self.ws_bytes = region_pool_workspace_bytes(self.max_regions, hw, hw, c)  # RuntimeError in a CPU-only build
        self.d_ws = b.alloc(self.ws_bytes)
        self._keep = []

    def __del__(self):
        if getattr(self, "buf", None) is not None:
            self.buf.free()

    def _h2d(self, dst: int, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        _ok(
            self.cudart.cudaMemcpyAsync(
                dst, arr.ctypes.data, arr.nbytes, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream
            ),
            "H2D copy",
        )
        self._keep.append(arr)  # host arrays live until the next synchronisation

    def _sync(self) -> None:
        _ok(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._keep = []

    def _run(self, g: str, shapes: dict[str, tuple], addrs: dict[str, int], profile: int | None = None) -> None:
        ctx = self.ctx[g]
        if profile is not None:
            ctx.set_optimization_profile_async(profile, int(self.stream))
        for name, shape in shapes.items():
            if not ctx.set_input_shape(name, shape):
                raise ValueError(f"{g}: shape {shape} for {name} is outside the engine's profile; rebuild")
        for name, ptr in addrs.items():
            ctx.set_tensor_address(name, ptr)
        if not ctx.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"TensorRT execution of the {g} engine failed")

    # ---- backend contract ----------------------------------------------------------------------------------

    def preprocess_frame(self, frame: np.ndarray, vision) -> np.ndarray:
        return preprocess_frame(frame, vision, mode=self.cfg.image_aspect_ratio)

    def has_frame(self, key: str | None) -> bool:
        return False  # no per-frame cache in this backend yet

    def visual_embeds(
        self, pixels: np.ndarray, masks: np.ndarray, frame_key: str | None = None, depth: np.ndarray | None = None
    ) -> tuple[Any, int]:
        if depth is not None:
            raise InputError(
                "depth maps are not supported by the trt backend yet (its engine directory has no depth graph); "
                "run SpatialRGPT with depth on the torch backend: Runtime.from_pretrained(checkpoint, backend='torch')"
            )
        cfg = self.cfg
        n = masks.shape[0]
        if n > self.max_regions:
            raise ValueError(f"at most {self.max_regions} regions per frame on the trt backend, got {n}")
        s, c, hw, g = cfg.vision.image_size, cfg.vision.hidden_size, cfg.refined_size, cfg.region.image_grid
        self._h2d(self.d_pixels, pixels[None].astype(self.vis_dtype))
        self._run("vision", {"pixels": (1, 3, s, s)}, {"pixels": self.d_pixels, "refined": self.d_refined})
        self._h2d(self.d_masks, masks.astype(np.float32))
        code = "f16" if self.vis_dtype == np.float16 else "f32"
        region_pool_device(  # on self.stream, after the vision engine
            DeviceTensor.contiguous(self.d_refined, code, (c, hw, hw)),
            DeviceTensor.contiguous(self.d_masks, "f32", (n, s, s)),
            DeviceTensor.contiguous(self.d_img_feat, code, (g * g, c)),
            DeviceTensor.contiguous(self.d_reg_feat, code, (n, c)),
            g,
            cfg.region.mask_eps,
            DeviceTensor.contiguous(self.d_ws, "u8", (self.ws_bytes,)),
            int(self.stream),
        )
        t, d = cfg.num_image_tokens, cfg.llm.hidden_size
        dsz = np.dtype(self.dec_dtype).itemsize
        if self.dec_dtype != self.vis_dtype:
            raise RuntimeError("trt engines must share one float type between connector and decoder")
        self._run(
            "connector",
            {"image_features": (g * g, c), "region_features": (n, c)},
            {
                "image_features": self.d_img_feat,
                "region_features": self.d_reg_feat,
                "image_embeds": self.d_table,
                "region_embeds": self.d_table + t * d * dsz,
            },
        )
        self._sync()
        return ("device-table", t + n), t

    def reserve(self, max_len: int, batch: int = 1) -> None:
        if max_len > self.ctx_len:
            raise ValueError(f"{max_len} positions exceed the engine's context {self.ctx_len}")
        while len(self.kv) < batch:  # rows beyond the first are allocated on first use (describe_many)
            self.kv.append(self._kv_set())
            self.state.append((0, 0))

    def sampler(self, gen, rows: int) -> HostSampler:
        return HostSampler(gen, rows)

    def _kv_set(self) -> list[list[int]]:
        """Two sets of device buffers (past and present swap roles each run) for one row, each packed
        [Hkv, P, Dh] for the current past length P."""
        llm = self.cfg.llm
        nbytes = llm.num_kv_heads * self.ctx_len * llm.head_dim * self.kv_item
        return [[self.buf.alloc(nbytes) for _ in range(2 * llm.num_layers)] for _ in range(2)]

    def _copy(self, dst: int, src: int, nbytes: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        _ok(self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream), "D2D copy")

    def _truncate(self, row: int, held: int, keep: int) -> None:
        """Row's past holds `held` positions packed per head; repack its first `keep` into the other set."""
        llm = self.cfg.llm
        cur = self.state[row][0]
        src, dst = self.kv[row][cur], self.kv[row][1 - cur]
        width, kind = keep * llm.head_dim * self.kv_item, self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        for d, s in zip(dst, src):
            _ok(
                self.cudart.cudaMemcpy2DAsync(
                    d, width, s, held * llm.head_dim * self.kv_item, width, llm.num_kv_heads, kind, self.stream
                ),
                "KV repack",
            )
        self.state[row] = (1 - cur, keep)

    def _decode(self, row: int, ids: list[int], rows: int, start: int, profile: int) -> np.ndarray:
        """Run the decoder on `ids` at positions start.. for KV row `row` (its past: start positions)."""
        llm = self.cfg.llm
        length = len(ids)
        self._h2d(self.d_ids, np.asarray(ids, np.int64))
        self._h2d(self.d_pos, np.arange(start, start + length, dtype=np.int64))
        cur = self.state[row][0]
        past, present = self.kv[row][cur], self.kv[row][1 - cur]
        shapes = {"input_ids": (1, length), "position_ids": (1, length), "mm_table": (1, rows, llm.hidden_size)}
        addrs = {"input_ids": self.d_ids, "position_ids": self.d_pos, "mm_table": self.d_table, "logits": self.d_logits}
        for i in range(llm.num_layers):
            for j, kind in enumerate(("key", "value")):
                shapes[f"past_{kind}_{i}"] = (1, llm.num_kv_heads, start, llm.head_dim)
                addrs[f"past_{kind}_{i}"] = past[2 * i + j]
                addrs[f"present_{kind}_{i}"] = present[2 * i + j]
        self._run("decoder", shapes, addrs, profile)
        logits = np.empty(llm.vocab_size, self.dec_dtype)  # the decoder graph's float type (fp32 for int8 graphs)
        _ok(
            self.cudart.cudaMemcpyAsync(
                logits.ctypes.data,
                self.d_logits,
                logits.nbytes,
                self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self.stream,
            ),
            "D2H copy",
        )
        self._keep.append(logits)  # the copy into it is queued until the sync
        self._sync()  # the only synchronisation of a decode step: the logits the sampler needs
        self.state[row] = (1 - cur, start + length)
        return logits.astype(np.float32)

    def prefill(self, prefix, start, suffixes, table, sampler, want_logits=False):
        """Row 0 keeps its first `start` positions (repacked when it held more), runs the rest of the prefix;
        the other rows copy row 0's prefix KV (same packed shape) and every row runs its suffix."""
        llm = self.cfg.llm
        rows, p = table[1], len(prefix)
        cur, held = self.state[0]
        if held != start:
            if start:
                self._truncate(0, held, start)
            else:
                self.state[0] = (cur, 0)
        if start < p:
            logits = self._decode(0, prefix[start:], rows, start, profile=0)
        if len(suffixes) == 1 and not suffixes[0]:
            all_logits = logits[None]
        else:
            nbytes = llm.num_kv_heads * p * llm.head_dim * self.kv_item
            for b in range(1, len(suffixes)):
                for d, s in zip(self.kv[b][0], self.kv[0][self.state[0][0]]):
                    self._copy(d, s, nbytes)
                self.state[b] = (0, p)
            all_logits = np.stack([self._decode(b, s, rows, p, profile=0) for b, s in enumerate(suffixes)])
        return sampler.pick(all_logits), (all_logits if want_logits else None)

    def step(self, tokens, positions, sampler, want_logits=False):
        logits = np.zeros((len(tokens), self.cfg.llm.vocab_size), np.float32)
        for b, (tok, pos) in enumerate(zip(tokens, positions)):
            if tok is not None:
                if self.state[b][1] != pos:
                    raise ValueError(f"row {b} holds {self.state[b][1]} positions; cannot decode position {pos}")
                logits[b] = self._decode(b, [tok], 1, pos, profile=1)
        return sampler.pick(logits, [tok is not None for tok in tokens]), (logits if want_logits else None)
