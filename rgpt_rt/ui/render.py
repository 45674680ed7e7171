"""The image as the demo shows it: regions filled and outlined in their own colours, numbered; and back from the
browser: a painted canvas (PNG data URL) -> a mask at the image's size."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import MaskError

# Distinct colours (Sasha Trubetskoy's list, reordered); region k gets PALETTE[(k - 1) % len].
PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
]
DISPLAY_SIDE = 512  # small images are enlarged (nearest) to about this; large ones shrunk to MAX_DISPLAY_SIDE
MAX_DISPLAY_SIDE = 1024


def color_hex(k: int) -> str:
    """Region k's (0-based) colour as #rrggbb."""
    return "#{:02x}{:02x}{:02x}".format(*PALETTE[k % len(PALETTE)])


def display_size(h: int, w: int) -> tuple[int, int]:
    """(width, height) of the displayed image: an integer enlargement of small images, large ones shrunk."""
    side = max(h, w)
    if side * 2 <= DISPLAY_SIDE:
        k = DISPLAY_SIDE // side
        return w * k, h * k
    if side > MAX_DISPLAY_SIDE:
        s = MAX_DISPLAY_SIDE / side
        return max(1, round(w * s)), max(1, round(h * s))
    return w, h


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def overlay(image: np.ndarray, masks: list[np.ndarray], highlight: int | None = None) -> Image.Image:
    """image [H, W, 3] uint8 + bool masks [H, W] -> the displayed picture (RGB, display_size)."""
    h, w = image.shape[:2]
    dw, dh = display_size(h, w)
    resample = Image.NEAREST if dw >= w else Image.BILINEAR
    base = Image.fromarray(image).convert("RGB").resize((dw, dh), resample)
    out = np.asarray(base, np.float32).copy()
    thick = max(3, (min(dw, dh) // 170) | 1)  # odd filter size
    labels = []
    for k, m in enumerate(masks):
        md = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((dw, dh), Image.NEAREST)) > 127
        if not md.any():
            continue
        color = np.array(PALETTE[k % len(PALETTE)], np.float32)
        alpha = 0.35 if highlight is None else (0.6 if k == highlight else 0.12)
        out[md] = (1 - alpha) * out[md] + alpha * color
        ring = np.asarray(Image.fromarray(md.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(thick))) > 127
        edge = ring & ~md
        if highlight == k:  # refer's pick: a wider ring
            edge = np.asarray(Image.fromarray(ring.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(thick))) > 127
            edge &= ~md
        out[edge] = color
        ys, xs = np.nonzero(md)
        labels.append((k, int(xs.min()), int(ys.min())))
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    font = _font(max(12, min(dw, dh) // 20))
    for k, x, y in labels:  # the number at the region's top-left corner, inside the picture
        text = str(k + 1)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        tw, th = x1 - x0 + 8, y1 - y0 + 6
        x, y = min(max(x - tw // 2, 0), dw - tw), min(max(y - th // 2, 0), dh - th)
        draw.rectangle((x, y, x + tw, y + th), fill=PALETTE[k % len(PALETTE)], outline=(0, 0, 0))
        draw.text((x + 4 - x0, y + 3 - y0), text, fill=(0, 0, 0), font=font)
    return pic


def data_url(pic: Image.Image) -> str:
    """PNG (flat drawings, small pictures) or JPEG (large photos) as a data URL for the page."""
    buf = io.BytesIO()
    if max(pic.size) > DISPLAY_SIDE:
        pic.save(buf, "JPEG", quality=90)
        kind = "jpeg"
    else:
        pic.save(buf, "PNG")
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


MAX_PAINT_BYTES = 16 << 20  # a painted canvas at display size is far smaller


def mask_from_data_url(url: str, h: int, w: int) -> np.ndarray:
    """The paint canvas (PNG data URL, painted pixels opaque) -> bool mask [h, w] at the image's size."""
    prefix = "data:image/png;base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise MaskError("the painted mask did not arrive as a PNG image; paint again")
    if len(url) > MAX_PAINT_BYTES:
        raise MaskError(f"the painted mask is over {MAX_PAINT_BYTES >> 20} MiB; paint again")
    try:
        pic = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :], validate=True)))
        pic.load()
    except (binascii.Error, OSError, ValueError):
        raise MaskError("the painted mask is not a readable PNG; paint again") from None
    alpha = pic.convert("RGBA").getchannel("A")
    # Box filter down to the image (a pixel is inside when half of it is painted), nearest up to it.
    small = alpha.resize((w, h), Image.BOX if alpha.width >= w else Image.NEAREST)
    return np.asarray(small) >= 128
