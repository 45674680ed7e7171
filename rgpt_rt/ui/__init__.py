"""The chatbot demo: mark regions of an image (boxes, painted masks, COCO RLE) and talk about them in the browser.

    rgpt-rt ui [--model DIR] [--host 127.0.0.1] [--port 7860]

Needs the ui extra (pip install 'rgpt_rt[ui]': gradio). session.py holds the logic (no Gradio), render.py the
picture, app.py the page.
"""

from __future__ import annotations

from .session import Demo, Session


def serve(rt, model_name: str, host: str = "127.0.0.1", port: int = 7860, max_new_tokens: int = 128) -> None:
    """Serve the demo for a loaded Runtime until interrupted."""
    from .app import serve as _serve

    _serve(Demo(rt, max_new_tokens=max_new_tokens), model_name, host=host, port=port)


__all__ = ["Demo", "Session", "serve"]
