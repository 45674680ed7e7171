"""`rgpt-rt demo`: a model compiled into an engine directory describes a region of a shipped image.

With the nano RegionGPT shipped (rgpt_rt/assets/nano), it also names the region's category and finds it among the
scene's regions, each answer printed beside the truth; otherwise (or with --random) a tiny random-weight
checkpoint runs the pipeline end to end on the bundled sample photo.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .assets import SAMPLE_BOX, SAMPLE_IMAGE
from .errors import RgptError
from .prompts import task_instruction

__all__ = ["cmd_demo", "demo_checkpoint", "demo_engine"]


def _cache_dir() -> Path:
    return Path(os.environ.get("RGPT_RT_CACHE") or Path.home() / ".cache" / "rgpt_rt")


def demo_checkpoint(layout: str = "llava", force: bool = False) -> Path:
    """A tiny random checkpoint in the user's cache folder ($RGPT_RT_CACHE, default ~/.cache/rgpt_rt), made
    once (again with force=True)."""
    path = _cache_dir() / f"demo-{layout}-seed0"
    if force or not (path / ".complete").is_file():
        from .testing import make_tiny_checkpoint

        (path / ".complete").unlink(missing_ok=True)
        make_tiny_checkpoint(path, layout=layout, seed=0)
        (path / ".complete").write_text("ok\n")
    return path


def demo_engine(checkpoint: Path, force: bool = False, out: Path | None = None) -> Path | None:
    """A checkpoint compiled into an ONNX engine directory (default: beside it; skipped when up to date unless
    force); None when the build tools (torch, onnx) or onnxruntime are not installed."""
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "build_engine")):
        return None
    from build_engine.builder import build

    out = out or checkpoint.with_name(checkpoint.name + "-engine")
    return build(checkpoint, out, force=force, log=lambda s: print("  " + s))


def _demo_runtime(args, checkpoint: Path, engine_dir: Path):
    from .runtime import Runtime

    engine = demo_engine(checkpoint, force=args.force, out=engine_dir) if args.backend in ("auto", "onnx") else None
    if engine is not None:
        print(f"engine directory: {engine} (backend: onnx)")
        return Runtime.from_pretrained(engine, backend="onnx")
    if args.backend == "onnx":
        raise RgptError("the onnx demo needs onnx and onnxruntime to build its engine: pip install 'rgpt_rt[onnx]'")
    rt = Runtime.from_pretrained(checkpoint)
    print(f"backend: {rt.backend_name} (install the onnx extra to run the demo from an engine directory)")
    return rt


def _timings(result) -> str:
    t = result.timings
    return (
        f"{t.tokens} tokens; preprocess {t.preprocess_ms:.1f} ms, vision {t.vision_ms:.1f} ms, prefill "
        f"{t.prefill_ms:.1f} ms ({t.prompt_tokens} tokens), decode {t.decode_ms:.1f} ms ({t.ms_per_token:.2f} ms/token)"
    )


def demo_nano(args) -> int:
    """The nano RegionGPT on a shipped scene of the synthetic world: every answer is printed beside the truth."""
    from .assets import DEMO_OBJECT, DEMO_SCENE, NANO_MODEL, scene
    from .data.scene import SHAPES
    from .inputs import rle_decode

    print(f"rgpt_rt demo: the nano RegionGPT ({NANO_MODEL}; trained on the synthetic world, see its MODEL_CARD.md)")
    rt = _demo_runtime(args, NANO_MODEL, _cache_dir() / "nano-engine")
    sc = scene(DEMO_SCENE)
    masks = [rle_decode(o["segmentation"]) for o in sc.objects]
    target = sc.objects[DEMO_OBJECT]
    print(f"image: {sc.image}  region: the mask of object {DEMO_OBJECT} (box {target['box']})")
    ok = True

    def show(what: str, answer, truth) -> None:
        nonlocal ok
        right = answer == truth
        ok &= right
        print(f"{what:<9} {answer!r:<40} truth {truth!r:<28} {'right' if right else 'WRONG'}")

    result = rt.generate(sc.image, task_instruction("detail"), [masks[DEMO_OBJECT]], max_new_tokens=args.max_new_tokens)
    print(f"detail:   {result.text!r}")
    print(f"          {_timings(result)}")
    show("brief:", rt.describe(sc.image, masks[DEMO_OBJECT], task="brief"), target["caption"])
    show("category:", rt.classify(sc.image, masks[DEMO_OBJECT], vocabulary=list(SHAPES)), target["category"])
    expression = f"the {target['size']} {target['color']} {target['category']}"
    show("refer:", rt.refer(sc.image, masks, expression), DEMO_OBJECT)
    print(f"          (refer: which of the scene's {len(masks)} regions is {expression!r}; 0-based index)")
    print("all answers right" if ok else "SOME ANSWERS ARE WRONG")
    return 0


def demo_random(args) -> int:
    path = demo_checkpoint(args.layout, force=args.force)
    print(f"rgpt_rt demo: tiny {args.layout}-layout checkpoint at {path}")
    rt = _demo_runtime(args, path, path.with_name(path.name + "-engine"))
    print(f"image: {SAMPLE_IMAGE}  region: box {SAMPLE_BOX}")
    print(
        "NOTE: this model has RANDOM weights, so its text is meaningless; it shows the whole pipeline "
        "(frame + region -> vision -> region_pool -> LLM -> text) running end to end."
    )
    result = rt.generate(SAMPLE_IMAGE, task_instruction("detail"), [SAMPLE_BOX], max_new_tokens=args.max_new_tokens)
    print(f"description: {result.text!r}")
    print(f"finish: {result.finish_reason}; {_timings(result)}")
    return 0


def cmd_demo(args) -> int:
    if importlib.util.find_spec("torch") is None:
        raise RgptError(
            "the demo compiles a checkpoint, which needs torch: pip install 'rgpt_rt[torch]' "
            "(this install runs engine directories: rgpt-rt describe IMAGE --box x0,y0,x1,y1 --model ENGINES)"
        )
    from .assets import NANO_MODEL

    if args.random or not (NANO_MODEL / "config.json").is_file():
        return demo_random(args)
    if args.layout != "llava":
        raise RgptError("--layout applies to --random (the nano model is a llava-layout checkpoint)")
    return demo_nano(args)
