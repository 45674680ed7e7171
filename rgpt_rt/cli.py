"""Command line: `rgpt-rt describe|ask|demo|ui` (also `python -m rgpt_rt ...`).

Every failure prints one line, `rgpt-rt: error: ...`, and exits non-zero (2: the command line or an input
is wrong; 1: anything else; 130: interrupted). `--debug` or RGPT_RT_DEBUG=1 adds the traceback and the runtime's
log. The image, the regions and the model path are checked before the model loads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__
from .assets import SAMPLE_BOX, SAMPLE_IMAGE
from .demo import cmd_demo, demo_checkpoint, demo_engine
from .errors import FrameError, InputError, MaskError, PromptError, RgptError
from .prompts import task_instruction

__all__ = ["SAMPLE_BOX", "SAMPLE_IMAGE", "build_parser", "demo_checkpoint", "demo_engine", "main"]

PROG = "rgpt-rt"
# The extra that brings each optional import (for the one-line error when one is missing).
EXTRAS = {
    "torch": "torch",
    "transformers": "torch",
    "safetensors": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "tensorrt": "trt",
    "cuda": "trt",
}
ENVIRONMENT = (
    "environment:\n"
    "  RGPT_RT_CACHE   where `rgpt-rt demo` keeps its checkpoint and engine (default ~/.cache/rgpt_rt)\n"
    "  RGPT_RT_DEBUG   1: print the traceback of an error (same as --debug)\n"
    "exit status: 0 ok, 2 bad command line or input, 1 any other error, 130 interrupted"
)


class UsageError(InputError):
    """A command-line argument is wrong (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---- regions as given on the command line --------------------------------------------------------------


class RegionArg(NamedTuple):
    flag: str  # "--box", ...
    text: str  # as the user wrote it
    value: Any  # numbers for --box / --polygon, a path for --mask / --rle

    def __str__(self) -> str:
        return f"{self.flag} {self.text}"


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if not all(abs(v) < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{flag} takes finite numbers, got {text!r}")
    return values


def _box(text: str) -> RegionArg:
    v = _floats(text, "--box")
    if len(v) != 4:
        raise argparse.ArgumentTypeError(f"--box takes 4 numbers x0,y0,x1,y1, got {len(v)} in {text!r}")
    if v[2] <= v[0] or v[3] <= v[1]:
        raise argparse.ArgumentTypeError(f"--box {text}: need x1 > x0 and y1 > y0 (corners x0,y0,x1,y1)")
    return RegionArg("--box", text, tuple(v))


def _polygon(text: str) -> RegionArg:
    v = _floats(text, "--polygon")
    if len(v) < 6 or len(v) % 2:
        raise argparse.ArgumentTypeError(f"--polygon takes x,y pairs for at least 3 points, got {text!r}")
    return RegionArg("--polygon", text, v)


# argparse reads any word that starts with "-" and is not a plain number as an option, so `--box -10,-10,50,50`
# would lose its value; such values are attached as `--box=-10,-10,50,50` before parsing.
_NUMBER_LIST = re.compile(r"-[0-9.][0-9.eE+\-, ]*")
_COORD_FLAGS = ("--box", "--polygon")


def _attach_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out.extend(argv[i:])
            break
        if a in _COORD_FLAGS and i + 1 < len(argv) and _NUMBER_LIST.fullmatch(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _fmt(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _read_region(r: RegionArg) -> Any:
    """The region object the runtime accepts (Box, Polygon, mask array, RLE dict)."""
    from .inputs import Box, Polygon

    if r.flag == "--box":
        return Box(*r.value)
    if r.flag == "--polygon":
        return Polygon(r.value)
    path = Path(r.value)
    if not path.is_file():
        raise MaskError(f"{r.flag} {path}: {'is a directory' if path.is_dir() else 'no such file'}")
    if r.flag == "--rle":
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MaskError(f"--rle {path}: not a JSON file ({exc})") from None
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except UnidentifiedImageError:
        raise MaskError(f"--mask {path} is not an image file (Pillow does not recognise its format)") from None
    except (OSError, ValueError) as exc:
        raise MaskError(f"--mask {path}: cannot decode the image ({exc})") from None


def _note_clipping(r: RegionArg, w: int, h: int) -> None:
    if r.flag == "--box":
        x0, y0, x1, y1 = r.value
        clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h)))
        if clipped != tuple(r.value):
            print(f"{PROG}: note: {r} extends past the {w}x{h} image; clipped to {_fmt(clipped)}", file=sys.stderr)
    elif r.flag == "--polygon":
        xs, ys = r.value[0::2], r.value[1::2]
        if min(xs) < 0 or min(ys) < 0 or max(xs) > w or max(ys) > h:
            print(f"{PROG}: note: {r} extends past the {w}x{h} image; the part outside is ignored", file=sys.stderr)


def _masks(regions: list[RegionArg], frame, allow_empty: bool):
    """All regions as one float [N, H, W] stack at the frame's size, checked before any model loads."""
    import numpy as np

    from .inputs import to_masks

    h, w = frame.shape[:2]
    stacks = []
    for r in regions:
        region = _read_region(r)  # its errors name the flag or the file
        try:
            m = to_masks(region, (h, w), allow_empty=True)
        except MaskError as exc:
            raise MaskError(f"{r}: {exc}") from None
        if not allow_empty and not all(m[i].any() for i in range(len(m))):
            raise MaskError(
                f"{r} is empty: none of its pixels lies inside the {w}x{h} image; pass --allow-empty-masks to "
                "run anyway (an empty region pools to zeros)"
            )
        _note_clipping(r, w, h)
        stacks.append(m)
    return np.concatenate(stacks) if stacks else None


def _read_image(path: str):
    """The image as uint8 [H, W, 3] RGB; a missing, non-image or corrupt file is named in the error."""
    from PIL import Image, UnidentifiedImageError

    from .inputs import load_frame

    p = Path(path)
    if not p.exists():
        raise FrameError(f"image not found: {p}")
    if p.is_dir():
        raise FrameError(f"{p} is a directory; give an image file")
    try:
        with Image.open(p):
            pass  # reads the header only: is this a format Pillow knows?
    except UnidentifiedImageError:
        raise FrameError(f"{p} is not an image file (Pillow does not recognise its format)") from None
    except OSError as exc:
        raise FrameError(f"cannot read image {p}: {exc.strerror or exc}") from None
    return load_frame(p)  # full decode; a truncated or corrupt file raises a FrameError that names it


def _check_model(path: str) -> Path:
    p = Path(path)
    if p.is_file():
        hint = (
            f"; pass the directory that holds it: --model {p.parent}"
            if p.name in ("config.json", "manifest.json")
            else ""
        )
        raise UsageError(
            f"--model {p} is a file; it takes a checkpoint directory (llava or vila layout) or an engine "
            f"directory built by `python -m rgpt_rt.build`{hint}"
        )
    if not p.is_dir():
        raise UsageError(f"--model {p}: no such directory")
    from .engine import is_engine_dir

    if not is_engine_dir(p) and importlib.util.find_spec("torch") is None:
        raise RgptError(
            f"--model {p} is a checkpoint directory, which runs on the torch backend, and torch is not installed: "
            "pip install 'rgpt_rt[torch]', or pass an engine directory built with `python -m rgpt_rt.build`"
        )
    return p


# ---- output ----------------------------------------------------------------------------------------------


def printable(text: str) -> str:
    """Text safe for a terminal: control and other non-printable characters (except newline and tab) become
    Python escapes (\\x00, \\u200b); everything else is kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii") for c in text)


def _print(result, as_json: bool, rt=None) -> None:
    if as_json:
        d = asdict(result)
        d.pop("first_logits", None)
        if rt is not None:  # how the checkpoint sees frames: "pad" (to a square) or "resize" (stretched)
            d["image_aspect_ratio"] = rt.cfg.image_aspect_ratio
        print(json.dumps(d, indent=2))  # exact text (JSON escapes control characters itself)
    else:
        print(printable(result.text))


def _note_preprocessing(rt) -> None:
    """Say on stderr when a checkpoint stretches frames (SpatialRGPT) instead of padding them (the default)."""
    if rt.cfg.image_aspect_ratio != "pad":
        s = rt.cfg.vision.image_size
        print(
            f"{PROG}: note: this checkpoint uses image_aspect_ratio={rt.cfg.image_aspect_ratio}: the frame and "
            f"masks are stretched to {s}x{s} (no padding)",
            file=sys.stderr,
        )


def _depth_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depth",
        metavar="FILE",
        default=None,
        help="depth map of the image for SpatialRGPT checkpoints (torch backend): a .npy float [H, W] array "
        "(relative depth/disparity, larger = nearer, as Depth Anything gives; normalised to 0..255), or an 8-bit "
        "depth image (PNG, as SpatialRGPT saves them). Each <region> is then followed by <depth> unless the "
        "instruction places <depth> itself",
    )


# ---- options -----------------------------------------------------------------------------------------------


def _region_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("regions (repeatable; kept in the order given, the k-th fills the k-th <region>)")
    g.add_argument(
        "--mask",
        dest="regions",
        action="append",
        type=lambda s: RegionArg("--mask", s, s),
        metavar="MASK.png",
        help="mask image of the same size as the image: non-zero = inside (0..255 grey levels are soft weights)",
    )
    g.add_argument(
        "--box",
        dest="regions",
        action="append",
        type=_box,
        metavar="x0,y0,x1,y1",
        help="box corners in pixels; negative or past-the-edge corners are clipped to the image (with a note)",
    )
    g.add_argument(
        "--polygon",
        dest="regions",
        action="append",
        type=_polygon,
        metavar="x,y,x,y,...",
        help="polygon vertices in pixels, at least 3 points",
    )
    g.add_argument(
        "--rle",
        dest="regions",
        action="append",
        type=lambda s: RegionArg("--rle", s, s),
        metavar="RLE.json",
        help="COCO run-length encoding as a JSON file {size: [h, w], counts}",
    )
    g.add_argument(
        "--allow-empty-masks",
        action="store_true",
        help="run even when a region has no pixel inside the image (it pools to zeros); default: an error",
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="checkpoint directory (llava or vila layout; torch backend) or engine directory from "
        "`python -m rgpt_rt.build` (onnx or trt backend)",
    )
    g.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx", "trt"],
        help="auto (default): trt for a TensorRT engine directory on a usable GPU, onnx for other engine "
        "directories, torch for checkpoints",
    )
    g.add_argument("--device", default="cpu", metavar="cpu|cuda[:N]", help="torch backend device (default cpu)")
    g.add_argument(
        "--dtype",
        default=None,
        choices=["fp32", "fp16", "bf16"],
        help="torch backend weight dtype (default: fp32 on the CPU, fp16 on CUDA)",
    )


def _generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="stop after N tokens (default 128)")
    g.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 (default): greedy; > 0: sample at T")
    g.add_argument("--top-k", type=int, default=0, metavar="K", help="sample from the K likeliest tokens (0: all)")
    g.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (1.0: off)")
    g.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: unseeded)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON: exact text, token ids, finish reason, timings",
    )


def _debug_arg(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--debug", action="store_true", default=default, help="on error, print the traceback (also RGPT_RT_DEBUG=1)"
    )


def _gen(args) -> dict:
    return dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )


def _runtime(args, model: Path):
    from .runtime import Runtime

    return Runtime.from_pretrained(model, backend=args.backend, device=args.device, dtype=args.dtype)


# ---- commands ----------------------------------------------------------------------------------------------


def cmd_describe(args) -> int:
    regions = args.regions or []
    if len(regions) != 1:
        raise UsageError(
            f"describe takes exactly one region (--mask, --box, --polygon or --rle), got {len(regions)}; "
            "for several, run describe once per region, or ask with one <region> per region"
        )
    frame = _read_image(args.image)
    masks = _masks(regions, frame, args.allow_empty_masks)
    rt = _runtime(args, _check_model(args.model))
    instruction = task_instruction(args.task)
    _note_preprocessing(rt)
    result = rt.generate(
        frame, instruction, masks, allow_empty_masks=args.allow_empty_masks, depth=args.depth, **_gen(args)
    )
    _print(result, args.json, rt)
    return 0


def cmd_ask(args) -> int:
    from .prompts import count_regions

    regions = args.regions or []
    n = count_regions(args.instruction)
    if n != len(regions):
        raise PromptError(
            f"the instruction has {n} <region> placeholder{'s' * (n != 1)} but {len(regions)} "
            f"region{'s were' if len(regions) != 1 else ' was'} given (one --mask, --box, --polygon or --rle per "
            "placeholder, in order)"
        )
    frame = _read_image(args.image)
    masks = _masks(regions, frame, args.allow_empty_masks)
    rt = _runtime(args, _check_model(args.model))
    _note_preprocessing(rt)
    result = rt.generate(
        frame, args.instruction, masks, allow_empty_masks=args.allow_empty_masks, depth=args.depth, **_gen(args)
    )
    _print(result, args.json, rt)
    return 0


def cmd_ui(args) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise RgptError("the demo needs gradio, which comes with the ui extra: pip install 'rgpt_rt[ui]'")
    from .assets import NANO_MODEL

    model = args.model or NANO_MODEL
    if args.model is None and not Path(model).is_dir():
        raise UsageError(f"the nano model is not in this install ({model}); pass a checkpoint: --model DIR")
    rt = _runtime(args, _check_model(str(model)))
    from .ui import serve

    serve(rt, Path(model).name, host=args.host, port=args.port, max_new_tokens=args.max_new_tokens)
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Region-level vision-language inference (RegionGPT family): an image, regions and an "
        "instruction in, text out.",
        epilog=ENVIRONMENT,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _debug_arg(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{describe,ask,demo}")
    d = sub.add_parser(
        "describe",
        help="describe one region of an image",
        description="Describe one region of an image.",
        epilog="example: rgpt-rt describe street.jpg --box 128,128,232,198 --model ENGINES\n\n" + ENVIRONMENT,
        formatter_class=fmt,
    )
    d.add_argument("image", help="image file (PNG, JPEG, ... anything Pillow reads)")
    d.add_argument(
        "--task",
        default="detail",
        choices=["detail", "brief"],
        help="detail (default): a description; brief: a caption",
    )
    _region_args(d)
    _depth_arg(d)
    _model_args(d)
    _generation_args(d)
    _debug_arg(d, argparse.SUPPRESS)
    d.set_defaults(fn=cmd_describe)
    a = sub.add_parser(
        "ask",
        help="ask a free-form question with <region> placeholders",
        description="Ask a question about an image; the k-th <region> in it stands for the k-th region given.",
        epilog='example: rgpt-rt ask street.jpg "Is <region> left of <region>?" --box 0,0,50,50 '
        "--box 100,100,200,200 --model ENGINES\n\n" + ENVIRONMENT,
        formatter_class=fmt,
    )
    a.add_argument("image", help="image file (PNG, JPEG, ... anything Pillow reads)")
    a.add_argument("instruction", help="the question, with one <region> per region")
    _region_args(a)
    _depth_arg(a)
    _model_args(a)
    _generation_args(a)
    _debug_arg(a, argparse.SUPPRESS)
    a.set_defaults(fn=cmd_ask)
    m = sub.add_parser(
        "demo",
        help="describe a region of a shipped image end to end (needs torch)",
        description="Compile a model into an ONNX engine directory in $RGPT_RT_CACHE (default ~/.cache/rgpt_rt) "
        "when onnx and onnxruntime are installed, and describe a region of a shipped image. The model: the nano "
        "RegionGPT trained on the synthetic world when the package ships it (rgpt_rt/assets/nano; it then also "
        "names the region's category and finds it among the scene's regions, each answer beside the truth); "
        "otherwise, or with --random, a tiny random-weight checkpoint on the bundled sample photo (the pipeline "
        "runs end to end; its text is noise).",
        epilog=ENVIRONMENT,
        formatter_class=fmt,
    )
    m.add_argument("--random", action="store_true", help="a tiny random-weight checkpoint instead of the nano model")
    m.add_argument(
        "--layout", default="llava", choices=["llava", "vila"], help="--random: checkpoint layout (default llava)"
    )
    m.add_argument("--max-new-tokens", type=int, default=48, metavar="N", help="detail tokens (default 48)")
    m.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="auto (default): build an ONNX engine directory and run it when onnx and onnxruntime are installed, "
        "else run the checkpoint on torch",
    )
    m.add_argument("--force", action="store_true", help="remake the cached checkpoint and rebuild the engine")
    _debug_arg(m, argparse.SUPPRESS)
    m.set_defaults(fn=cmd_demo)
    u = sub.add_parser(
        "ui",
        help="the chatbot demo in the browser: draw regions on an image and talk about them (needs the ui extra)",
        description="Serve the chatbot demo (Gradio): pick a shipped scene or upload an image, draw boxes, paint "
        "masks or paste COCO RLEs, and ask about <region1>, <region2>... (streamed answers, multi-turn), or run "
        "describe, brief, classify and refer on them.",
        epilog="example: rgpt-rt ui --port 7860, then open http://127.0.0.1:7860\n\n" + ENVIRONMENT,
        formatter_class=fmt,
    )
    u.add_argument("--model", default=None, metavar="DIR", help="checkpoint or engine directory (default: nano model)")
    u.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "trt"], help="as for describe")
    u.add_argument("--device", default="cpu", metavar="cpu|cuda[:N]", help="torch backend device (default cpu)")
    u.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="torch backend weight dtype")
    u.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    u.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    u.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="longest answer (default 128)")
    _debug_arg(u, argparse.SUPPRESS)
    u.set_defaults(fn=cmd_ui)
    return parser


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong (and the extra to install when an optional package is missing)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in EXTRAS:
            extra = EXTRAS[top]
            return f"{top} is not installed; it comes with the {extra} extra: pip install 'rgpt_rt[{extra}]'"
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (RgptError, ImportError)):
        return msg
    return f"{msg} ({type(exc).__name__}; --debug shows the traceback)"


def _debug_requested(argv: list[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in options or os.environ.get("RGPT_RT_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    if debug:
        logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(_attach_negative_values(argv))
        from . import _native

        _native.cpu()  # a missing or shadowed native module is reported now, not after the model loads
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line's one place that turns errors into one line
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1


if __name__ == "__main__":
    sys.exit(main())
