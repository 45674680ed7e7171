"""Command line: `rgpt-rt describe|ask|demo` (also `python -m rgpt_rt ...`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from .errors import RgptError

SAMPLE_IMAGE = Path(__file__).with_name("assets") / "sample.png"
SAMPLE_BOX = (128, 128, 232, 198)  # the red car in the sample image


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _box(text: str):
    v = _floats(text, "--box")
    if len(v) != 4:
        raise argparse.ArgumentTypeError(f"--box needs x0,y0,x1,y1, got {text!r}")
    return ("box", tuple(v))


def _polygon(text: str):
    v = _floats(text, "--polygon")
    if len(v) < 6 or len(v) % 2:
        raise argparse.ArgumentTypeError(f"--polygon needs x,y pairs for at least 3 points, got {text!r}")
    return ("polygon", v)


def _load_region(kind: str, value):
    import numpy as np
    from PIL import Image

    from .inputs import Box, Polygon

    if kind == "box":
        return Box(*value)
    if kind == "polygon":
        return Polygon(value)
    if kind == "rle":
        return json.loads(Path(value).read_text())
    try:
        with Image.open(value) as im:
            return np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise RgptError(f"cannot read mask image {value}: {exc}") from None


def _region_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("regions (repeatable, kept in the order given)")
    g.add_argument(
        "--mask",
        dest="regions",
        action="append",
        type=lambda s: ("mask", s),
        metavar="MASK.png",
        help="mask image, non-zero = inside (0..255 grey levels are soft weights)",
    )
    g.add_argument("--box", dest="regions", action="append", type=_box, metavar="x0,y0,x1,y1")
    g.add_argument("--polygon", dest="regions", action="append", type=_polygon, metavar="x,y,x,y,...")
    g.add_argument(
        "--rle",
        dest="regions",
        action="append",
        type=lambda s: ("rle", s),
        metavar="RLE.json",
        help="COCO RLE as JSON {size, counts}",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory (llava or vila layout) or engine directory")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "trt"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=[None, "fp32", "fp16", "bf16"])
    p.add_argument("--bgr", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the result with token ids and timings as JSON")


def _gen(args) -> dict:
    return dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )


def _print(result, as_json: bool) -> None:
    if as_json:
        d = asdict(result)
        d.pop("first_logits", None)
        print(json.dumps(d, indent=2))
    else:
        print(result.text)


def _runtime(args):
    from .runtime import Runtime

    return Runtime.from_pretrained(args.model, backend=args.backend, device=args.device, dtype=args.dtype)


def cmd_describe(args) -> int:
    from .prompts import task_instruction

    regions = [_load_region(k, v) for k, v in (args.regions or [])]
    if len(regions) != 1:
        raise RgptError(f"describe takes exactly one region (--mask, --box, --polygon or --rle), got {len(regions)}")
    rt = _runtime(args)
    if args.task not in ("detail", "brief"):
        raise RgptError(f"unknown task '{args.task}'")
    _print(rt.generate(args.image, task_instruction(args.task), regions, **_gen(args)), args.json)
    return 0


def cmd_ask(args) -> int:
    regions = [_load_region(k, v) for k, v in (args.regions or [])]
    rt = _runtime(args)
    _print(rt.generate(args.image, args.instruction, regions, **_gen(args)), args.json)
    return 0


def demo_checkpoint(layout: str = "llava") -> Path:
    """A tiny random checkpoint in the user's cache folder (made once)."""
    cache = Path(os.environ.get("RGPT_RT_CACHE", Path.home() / ".cache" / "rgpt_rt"))
    path = cache / f"demo-{layout}-seed0"
    if not (path / ".complete").is_file():
        from .testing import make_tiny_checkpoint

        make_tiny_checkpoint(path, layout=layout, seed=0)
        (path / ".complete").write_text("ok\n")
    return path


def demo_engine(checkpoint: Path) -> Path | None:
    """The demo checkpoint compiled into an ONNX engine directory (skipped when up to date); None when the
    build tools (torch, onnx) or onnxruntime are not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        from build_engine.builder import build
    except ImportError:
        return None
    return build(checkpoint, checkpoint.with_name(checkpoint.name + "-engine"), log=lambda s: print("  " + s))


def cmd_demo(args) -> int:
    from .runtime import Runtime

    path = demo_checkpoint(args.layout)
    print(f"rgpt_rt demo: tiny {args.layout}-layout checkpoint at {path}")
    engine = demo_engine(path) if args.backend in ("auto", "onnx") else None
    if engine is not None:
        rt = Runtime.from_pretrained(engine, backend="onnx")
        print(f"engine directory: {engine} (backend: onnx)")
    else:
        if args.backend == "onnx":
            raise RgptError("the onnx demo needs onnx and onnxruntime: pip install 'rgpt_rt[onnx]'")
        rt = Runtime.from_pretrained(path)
        print(f"backend: {rt.backend_name} (install the onnx extra to run the demo from an engine directory)")
    print(f"image: {SAMPLE_IMAGE}  region: box {SAMPLE_BOX}")
    print(
        "NOTE: the demo model has RANDOM weights, so its text is meaningless; the demo shows the whole pipeline "
        "(frame + region -> vision -> region_pool -> LLM -> text) running end to end."
    )
    result = rt.generate(
        SAMPLE_IMAGE,
        "Describe in detail the object located at <region> in the image.",
        [SAMPLE_BOX],
        max_new_tokens=args.max_new_tokens,
    )
    t = result.timings
    print(f"description: {result.text!r}")
    print(
        f"finish: {result.finish_reason}; {t.tokens} tokens; preprocess {t.preprocess_ms:.1f} ms, "
        f"vision {t.vision_ms:.1f} ms, prefill {t.prefill_ms:.1f} ms ({t.prompt_tokens} tokens), "
        f"decode {t.decode_ms:.1f} ms ({t.ms_per_token:.2f} ms/token)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rgpt-rt", description="Region-level vision-language inference")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="describe one region of an image")
    d.add_argument("image")
    d.add_argument("--task", default="detail", choices=["detail", "brief"])
    _region_args(d)
    _common(d)
    d.set_defaults(fn=cmd_describe)
    a = sub.add_parser("ask", help="ask a free-form question with <region> placeholders")
    a.add_argument("image")
    a.add_argument("instruction")
    _region_args(a)
    _common(a)
    a.set_defaults(fn=cmd_ask)
    m = sub.add_parser("demo", help="describe a region of the bundled sample image with a tiny random model")
    m.add_argument("--layout", default="llava", choices=["llava", "vila"])
    m.add_argument("--max-new-tokens", type=int, default=24)
    m.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="auto: build an ONNX engine directory and run it when onnxruntime is installed",
    )
    m.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (RgptError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
