"""Read and check an engine directory's manifest.json (no torch, no build tools).

manifest.json holds: format and format_version, the rgpt_rt version that built it, backend ("onnx" | "trt"),
precision ("fp32" | "fp16" | "int8") and the int8 recipe, the model config, per graph its ONNX file (and
TensorRT engine), input and output names, dtypes and shapes, the TensorRT shape profiles, tool versions,
the GPU architecture (trt), the hash of the build's inputs, and the sha256 and size of every file.
The runtime reads only the manifest and the files it names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError, EngineError

FORMAT = "rgpt_rt.engine"
FORMAT_VERSION = 1
REBUILD = "rebuild it with: python -m rgpt_rt.build CHECKPOINT --out DIR --force"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_engine_dir(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


BACKENDS = ("onnx", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
GRAPH_PRECISIONS = ("fp32", "fp16")
GRAPHS = ("vision", "connector", "decoder")
# manifest dtype names -> ONNX Runtime's type strings (session.get_inputs()[i].type)
ORT_TYPES = {"fp32": "tensor(float)", "fp16": "tensor(float16)", "int64": "tensor(int64)", "int32": "tensor(int32)"}


def inside(root: Path, name: Any, where: str) -> Path:
    """root / name, refused unless it is a relative path that resolves (symlinks followed) inside root."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise EngineError(f"{where}: a file name must be a non-empty string, got {name!r}; {REBUILD}")
    rel = Path(name)
    target = root / rel
    base = root.resolve()
    if rel.is_absolute() or ".." in rel.parts or not target.resolve().is_relative_to(base):
        raise EngineError(
            f"{where}: file {name!r} lies outside the engine directory {root}; an engine directory may only name "
            f"its own files; {REBUILD}"
        )
    return target


@dataclass
class EngineManifest:
    path: Path
    data: dict[str, Any]
    model: ModelConfig | None = None  # parsed and validated by read_manifest

    @property
    def cfg(self) -> ModelConfig:
        if self.model is None:
            self.model = _model_config(self.data, self.path / "manifest.json")
        return self.model

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def backend(self) -> str:
        return self.data["backend"]

    def graph(self, name: str) -> dict[str, Any]:
        return self.data["graphs"][name]

    def file(self, name: str) -> Path:
        return inside(self.path, name, str(self.path / "manifest.json"))

    def check_session(self, graph: str, path: Path, session: Any) -> None:
        """Compare an ONNX Runtime session's inputs and outputs (names, element types) with what the manifest
        records for `graph`: a swapped or foreign graph file is refused here, at load, naming the file."""
        g = self.graph(graph)
        for kind, got in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
            want = g.get(kind)
            if want is None:
                continue
            want_io = [(io["name"], ORT_TYPES.get(io["dtype"], io["dtype"])) for io in want]
            got_io = [(io.name, io.type) for io in got]
            if want_io != got_io:
                raise EngineError(
                    f"{path}: the file does not hold the {graph} graph the manifest describes: its {kind} are "
                    f"{_show(got_io)}, the manifest says {_show(want_io)} (swapped or foreign file?); {REBUILD}"
                )
            for io, g_io in zip(want, got):  # fixed sizes (ints on both sides) must agree too
                w_shape, g_shape = io.get("shape"), list(g_io.shape)
                if not isinstance(w_shape, list):
                    continue
                fixed = [(a, b) for a, b in zip(w_shape, g_shape) if isinstance(a, int) and isinstance(b, int)]
                if len(w_shape) != len(g_shape) or any(a != b for a, b in fixed):
                    raise EngineError(
                        f"{path}: the file does not hold the {graph} graph the manifest describes: {kind[:-1]} "
                        f"{io['name']} has shape {g_shape}, the manifest says {w_shape} (a graph from another "
                        f"model?); {REBUILD}"
                    )

    def check_trt(self, trt_version: str, gpu_arch: str) -> None:
        """Refuse an engine built with another TensorRT version or for another GPU architecture."""
        built = self.data.get("tools", {}).get("tensorrt")
        arch = (self.data.get("gpu") or {}).get("arch")
        if built is None or arch is None:
            raise EngineError(
                f"{self.path} has no TensorRT engines (built for backend '{self.backend}'); "
                "build with --backend trt on the target machine"
            )
        if arch != gpu_arch:
            raise EngineError(
                f"{self.path} was built for GPU architecture {arch} but this GPU is {gpu_arch}: "
                f"TensorRT engines only run on the architecture they were built for; {REBUILD}"
            )
        if built != trt_version:
            raise EngineError(
                f"{self.path} was built with TensorRT {built} but TensorRT {trt_version} is installed; {REBUILD}"
            )


def _show(io: list[tuple[str, str]]) -> str:
    names = [f"{n} {t.removeprefix('tensor(').removesuffix(')')}" for n, t in io[:4]]
    return "[" + ", ".join(names) + (", …" if len(io) > 4 else "") + "]"


def _model_config(data: dict[str, Any], mf: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(data["model"], where=f"{mf} field 'model'")
    except ConfigError as exc:
        raise EngineError(f"{exc}; {REBUILD}") from None


def _check_graph_shapes(cfg: ModelConfig, graphs: dict[str, Any], mf: Path) -> None:
    """The model config against the graphs' recorded I/O shapes (what the files were exported with)."""
    llm, s = cfg.llm, cfg.vision.image_size
    expect = {
        ("vision", "inputs", "pixels"): {1: cfg.vision.num_channels, 2: s, 3: s},
        ("vision", "outputs", "refined"): {1: cfg.vision.hidden_size, 2: cfg.refined_size, 3: cfg.refined_size},
        ("connector", "inputs", "image_features"): {0: cfg.region.image_grid**2, 1: cfg.vision.hidden_size},
        ("connector", "outputs", "image_embeds"): {0: cfg.num_image_tokens, 1: llm.hidden_size},
        ("decoder", "inputs", "mm_table"): {2: llm.hidden_size},
        ("decoder", "inputs", "past_key_0"): {1: llm.num_kv_heads, 3: llm.head_dim},
    }
    for (graph, kind, name), dims in expect.items():
        ios = {io.get("name"): io for io in graphs[graph].get(kind, []) if isinstance(io, dict)}
        shape = ios.get(name, {}).get("shape")
        if not isinstance(shape, list):
            continue
        for axis, want in dims.items():
            if axis < len(shape) and isinstance(shape[axis], int) and shape[axis] != want:
                raise EngineError(
                    f"{mf}: the model config does not match the {graph} graph: {name} has size {shape[axis]} on "
                    f"axis {axis}, the config implies {want}; {REBUILD}"
                )
    dec_inputs = graphs["decoder"].get("inputs")
    if isinstance(dec_inputs, list):
        layers = sum(1 for io in dec_inputs if isinstance(io, dict) and str(io.get("name", "")).startswith("past_key_"))
        if layers != llm.num_layers:
            raise EngineError(
                f"{mf}: model.llm.num_layers={llm.num_layers} but the decoder graph has {layers} layers of KV cache "
                f"inputs; {REBUILD}"
            )


def _check_structure(data: Any, mf: Path) -> None:
    """Types and values of every field the runtime reads, each error naming its field."""
    if not isinstance(data, dict):
        raise EngineError(f"{mf} must hold a JSON object, got {type(data).__name__}; {REBUILD}")
    if data.get("format") != FORMAT:
        raise EngineError(f"{mf} is not an rgpt_rt engine manifest (format {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise EngineError(
            f"{mf} has format version {data.get('format_version')}, this rgpt_rt reads version "
            f"{FORMAT_VERSION}; {REBUILD}"
        )
    for key in ("backend", "precision", "model", "graphs", "files"):
        if key not in data:
            raise EngineError(f"{mf} lacks the field '{key}'; {REBUILD}")
    if data["backend"] not in BACKENDS:
        raise EngineError(f"{mf}: backend {data['backend']!r} is not one of {', '.join(BACKENDS)}; {REBUILD}")
    if data["precision"] not in PRECISIONS:
        raise EngineError(f"{mf}: precision {data['precision']!r} is not one of {', '.join(PRECISIONS)}; {REBUILD}")
    if data.get("graph_precision", "fp32") not in GRAPH_PRECISIONS:
        raise EngineError(
            f"{mf}: graph_precision {data['graph_precision']!r} is not one of {', '.join(GRAPH_PRECISIONS)}; {REBUILD}"
        )
    for key in ("tools", "gpu", "source"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise EngineError(f"{mf}: field '{key}' must be an object, got {type(data[key]).__name__}; {REBUILD}")
    files = data["files"]
    if not isinstance(files, dict):
        raise EngineError(f"{mf}: field 'files' must be an object (name -> size and sha256); {REBUILD}")
    for name, entry in files.items():
        if not isinstance(entry, dict):
            raise EngineError(f"{mf}: files entry {name!r} must be an object with 'bytes' and 'sha256'; {REBUILD}")
        size, digest = entry.get("bytes"), entry.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise EngineError(f"{mf}: files entry {name!r} field 'bytes' must be a size in bytes, got {size!r}")
        if not isinstance(digest, str) or len(digest) != 64:
            raise EngineError(f"{mf}: files entry {name!r} field 'sha256' must be a hex digest, got {digest!r}")
    graphs = data["graphs"]
    if not isinstance(graphs, dict):
        raise EngineError(f"{mf}: field 'graphs' must be an object (graph name -> files); {REBUILD}")
    for gname in GRAPHS:
        if gname not in graphs:
            raise EngineError(f"{mf}: field 'graphs' lacks the {gname} graph; {REBUILD}")
    for gname, g in graphs.items():
        if not isinstance(g, dict):
            raise EngineError(f"{mf}: graphs entry '{gname}' must be an object, got {type(g).__name__}; {REBUILD}")
        if "onnx" not in g:
            raise EngineError(f"{mf}: graph {gname} lacks the field 'onnx'; {REBUILD}")
        for key in ("onnx", "engine"):
            if key in g and g[key] is not None and not isinstance(g[key], str):
                raise EngineError(f"{mf}: graph {gname} field '{key}' must be a file name, got {g[key]!r}")
        for kind in ("inputs", "outputs"):
            ios = g.get(kind)
            if ios is not None and not (
                isinstance(ios, list)
                and all(isinstance(io, dict) and isinstance(io.get("name"), str) and "dtype" in io for io in ios)
            ):
                raise EngineError(f"{mf}: graph {gname} field '{kind}' must be a list of {{name, dtype, shape}}")


def read_manifest(path: str | Path, verify: bool = True) -> EngineManifest:
    """Load manifest.json and check it: every field the runtime reads has the right type and a known value, every
    file it names lies inside the directory (no absolute paths, no `..`, no symlink out) and exists, the model
    config is valid and matches the graphs' recorded shapes. With verify, also check every listed file's size and
    sha256 (without, a changed graph is found when its session opens: see check_session)."""
    p = Path(path)
    mf = p / "manifest.json"
    if not mf.is_file():
        raise EngineError(
            f"{p} is not an engine directory (no manifest.json); build one with "
            "python -m rgpt_rt.build CHECKPOINT --out DIR"
        )
    try:
        data = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineError(f"{mf} is not valid JSON ({exc}); {REBUILD}") from None
    _check_structure(data, mf)
    files = data["files"]
    for name in sorted(files):
        inside(p, name, str(mf))
    for gname, g in data["graphs"].items():
        for key in ("onnx", "engine"):
            if g.get(key):
                inside(p, g[key], f"{mf} graph {gname}")
                if g[key] not in files:
                    raise EngineError(f"{mf}: graph {gname} names {g[key]}, which is not in the file list; {REBUILD}")
    model = _model_config(data, mf)
    _check_graph_shapes(model, data["graphs"], mf)
    for name in sorted(files):
        f = p / name
        if not f.is_file():
            raise EngineError(f"{p}: file {name} named in manifest.json is missing; {REBUILD}")
        if verify:
            if f.stat().st_size != files[name]["bytes"]:
                raise EngineError(
                    f"{p}: file {name} changed since the build (size {f.stat().st_size}, manifest "
                    f"says {files[name]['bytes']}); {REBUILD}"
                )
            if sha256_file(f) != files[name]["sha256"]:
                raise EngineError(f"{p}: file {name} changed since the build (sha256 differs); {REBUILD}")
    return EngineManifest(p, data, model)
