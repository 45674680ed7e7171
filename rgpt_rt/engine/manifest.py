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
from ..errors import EngineError

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


@dataclass
class EngineManifest:
    path: Path
    data: dict[str, Any]

    @property
    def cfg(self) -> ModelConfig:
        return ModelConfig.from_dict(self.data["model"])

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def backend(self) -> str:
        return self.data["backend"]

    def graph(self, name: str) -> dict[str, Any]:
        return self.data["graphs"][name]

    def file(self, name: str) -> Path:
        return self.path / name

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


def read_manifest(path: str | Path, verify: bool = True) -> EngineManifest:
    """Load manifest.json; with verify, check every listed file exists with its recorded size and sha256."""
    p = Path(path)
    mf = p / "manifest.json"
    if not mf.is_file():
        raise EngineError(
            f"{p} is not an engine directory (no manifest.json); build one with "
            "python -m rgpt_rt.build CHECKPOINT --out DIR"
        )
    try:
        data = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise EngineError(f"{mf} is not valid JSON ({exc}); {REBUILD}") from None
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
    files = data["files"]
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
    for gname, g in data["graphs"].items():
        for key in ("onnx", "engine"):
            if g.get(key) and g[key] not in files:
                raise EngineError(f"{mf}: graph {gname} names {g[key]}, which is not in the file list; {REBUILD}")
    return EngineManifest(p, data)
