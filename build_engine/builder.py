"""Build an engine directory from a checkpoint: ONNX graphs (+ int8 rewrite, + TensorRT engines) and the
manifest the runtime reads. Staged in a temporary folder and moved into place only when complete."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import rgpt_rt
from rgpt_rt.checkpoint import load_model
from rgpt_rt.config import read_config
from rgpt_rt.engine import FORMAT, FORMAT_VERSION, read_manifest, sha256_file
from rgpt_rt.errors import EngineError
from rgpt_rt.tokenizer import PromptTokenizer, find_tokenizer_dir

from .export import export_connector, export_decoder, export_vision

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("onnx", "trt")


def inputs_hash(checkpoint: Path, options: dict) -> str:
    """What a build depends on: every checkpoint file's bytes, the options, the rgpt_rt version."""
    h = hashlib.sha256()
    for f in sorted(p for p in checkpoint.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(checkpoint)).encode())
        h.update(sha256_file(f).encode())
    h.update(json.dumps({**options, "rgpt_rt": rgpt_rt.__version__}, sort_keys=True).encode())
    return h.hexdigest()


def _tool_versions() -> dict:
    import onnx
    import torch

    tools = {"torch": torch.__version__, "onnx": onnx.__version__, "tensorrt": None}
    try:
        import onnxruntime

        tools["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        tools["onnxruntime"] = None
    return tools


def build(
    checkpoint: str | Path,
    out: str | Path,
    precision: str = "fp32",
    backend: str = "onnx",
    int8_recipe: str = "smoothquant",
    force: bool = False,
    calib_prompts: int = 8,
    log: Callable[[str], None] = print,
) -> Path:
    checkpoint, out = Path(checkpoint), Path(out)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    options = {"precision": precision, "backend": backend, "int8_recipe": int8_recipe if precision == "int8" else None}
    digest = inputs_hash(checkpoint, options)
    if not force and (out / "manifest.json").is_file():
        try:
            old = read_manifest(out, verify=True)
            if old.data.get("source", {}).get("inputs_sha256") == digest:
                log(f"{out} is up to date with {checkpoint} (inputs unchanged); skipped. Use --force to rebuild.")
                return out
        except EngineError as exc:
            log(f"existing engine directory is not usable ({exc}); rebuilding")
    steps = 6 if backend == "trt" else 5
    log(f"[1/{steps}] loading {checkpoint} ({read_config(checkpoint).layout} layout)")
    model = load_model(checkpoint, dtype="fp32")
    cfg = model.cfg
    # int8 quantises the decoder's linear layers; the graphs around it stay fp32 so all share one float type.
    graph_prec = "fp16" if precision == "fp16" else "fp32"
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graphs = {}
        log(f"[2/{steps}] exporting vision graph ({graph_prec})")
        graphs["vision"] = {"onnx": "vision.onnx", **export_vision(model, stage / "vision.onnx", graph_prec)}
        log(f"[3/{steps}] exporting connector graph ({graph_prec})")
        graphs["connector"] = {
            "onnx": "connector.onnx",
            **export_connector(model, stage / "connector.onnx", graph_prec),
        }
        quality = None
        if precision == "int8":
            log(f"[4/{steps}] exporting decoder graph (int8, {int8_recipe})")
            graphs["decoder"], quality = _int8_decoder(model, checkpoint, stage, int8_recipe, calib_prompts, log)
        else:
            log(f"[4/{steps}] exporting decoder graph ({precision})")
            graphs["decoder"] = {"onnx": "decoder.onnx", **export_decoder(model, stage / "decoder.onnx", precision)}
        tools = _tool_versions()
        gpu, profiles = None, None
        if backend == "trt":
            from .trt_builder import build_engines

            log(f"[5/{steps}] building TensorRT engines")
            gpu, profiles, tools["tensorrt"] = build_engines(stage, graphs, cfg, log)
        log(f"[{steps}/{steps}] writing tokenizer and manifest")
        tok_dir = find_tokenizer_dir(checkpoint)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tok_dir / name).is_file():
                shutil.copy2(tok_dir / name, stage / name)
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(stage.iterdir())
            if p.is_file()
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "rgpt_rt_version": rgpt_rt.__version__,
            "backend": backend,
            "precision": precision,
            "int8_recipe": options["int8_recipe"],
            "graph_precision": graph_prec,
            "model": cfg.to_dict(),
            "graphs": graphs,
            "profiles": profiles,
            "tools": tools,
            "gpu": gpu,
            "quality": quality,
            "source": {"checkpoint": str(checkpoint.resolve()), "inputs_sha256": digest},
            "files": files,
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.chmod(0o755)  # mkdtemp makes it private
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log(f"engine directory ready: {out}")
    return out


def _int8_decoder(model, checkpoint: Path, stage: Path, recipe: str, calib_prompts: int, log):
    from .prompts import decoder_inputs
    from .quality import OrtDecoder, compare
    from .quantize import RECIPES, rewrite_int8, smooth, weight_index

    if recipe not in RECIPES:
        raise ValueError(f"int8 recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    cfg = model.cfg
    tok = PromptTokenizer(checkpoint, cfg)
    fp32_path = stage / "decoder_fp32.tmp.onnx"
    io = export_decoder(model, fp32_path, "fp32")
    if recipe == "weight_only":
        n = rewrite_int8(fp32_path, stage / "decoder.onnx", cfg.llm.vocab_size)
    else:
        import torch

        calib = decoder_inputs(model, tok, calib_prompts, seed=0)

        def run(m):
            for ids, table in calib:
                m.llm.setup_caches(1, len(ids))
                m.llm(m.embed(torch.tensor([ids]), torch.from_numpy(table)[None]), torch.arange(len(ids))[None])

        log(f"      calibrating SmoothQuant on {len(calib)} prompts")
        smoothed, act = smooth(model, run)
        smooth_path = stage / "decoder_smooth.tmp.onnx"
        export_decoder(smoothed, smooth_path, "fp32")
        n = rewrite_int8(smooth_path, stage / "decoder.onnx", cfg.llm.vocab_size, act, weight_index(smoothed))
        smooth_path.unlink()
    llm = cfg.llm
    held_out = decoder_inputs(model, tok, 4, seed=1)
    quality = compare(
        OrtDecoder(fp32_path, llm.num_layers, llm.num_kv_heads, llm.head_dim),
        OrtDecoder(stage / "decoder.onnx", llm.num_layers, llm.num_kv_heads, llm.head_dim),
        held_out,
    )
    quality["recipe"], quality["int8_matmuls"] = recipe, n
    log(
        f"      int8 quality vs fp32: first-step logits cosine min {quality['first_logits_cosine_min']:.4f}, "
        f"greedy agreement {quality['greedy_agreement_teacher_forced']:.3f} over {quality['tokens']} tokens"
    )
    fp32_path.unlink()
    return {"onnx": "decoder.onnx", **io}, quality
