"""The Gradio app: the region canvas, the chat, the task buttons and the status, timing and result lines.

Every handler returns a dict {component: new value}; a bad input becomes a one-line message in the status line
(elem_id rgpt-status), never a traceback. Element ids (rgpt-*) are the test's handles on the page.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the demo runs offline

import gradio as gr  # noqa: E402 - after the analytics switch

from ..assets import DEMO_SCENE, scenes  # noqa: E402
from ..data.scene import SHAPES  # noqa: E402
from ..errors import RgptError  # noqa: E402
from ..generation import GenerationResult  # noqa: E402
from .render import color_hex, data_url, mask_from_data_url, overlay  # noqa: E402
from .session import Demo, Session, timing_line  # noqa: E402

log = logging.getLogger("rgpt_rt.ui")
_HERE = Path(__file__).resolve().parent
CANVAS = """<div class="stage" data-mode="box">
  <div class="tools">
    <label><input type="radio" class="mode" name="rgpt-mode" value="box" checked> draw boxes</label>
    <label><input type="radio" class="mode" name="rgpt-mode" value="paint"> paint a mask</label>
    <span class="paint-only">brush <input type="range" class="brush" min="2" max="60" value="12"></span>
    <button type="button" class="add-mask paint-only">add painted mask</button>
    <button type="button" class="clear-paint paint-only">clear paint</button>
  </div>
  <div class="surface"><img class="frame" src="${value}" draggable="false" alt="the image and its regions"
    ><canvas class="paint"></canvas><div class="band"></div></div>
  <div class="hint">Drag a box over an object, or switch to paint. Click a region to put it in the message.</div>
</div>"""
PAGE_CSS = """
#rgpt-status .rgpt-error { color: var(--error-text-color, #b91c1c); font-weight: 600; }
#rgpt-legend span.sw { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #000;
                       vertical-align: -0.1em; margin-right: 0.2em; }
"""


def _error(exc: BaseException) -> str:
    """The status line for a failed action: the typed error's own words; anything else, its type and message."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, RgptError):
        log.exception("rgpt-rt ui: unexpected error")
        msg = f"internal error ({type(exc).__name__}: {msg}); the server's log has the details"
    return f'<span class="rgpt-error">⚠ {_escape(msg)}</span>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_app(demo: Demo, model_name: str = "") -> gr.Blocks:
    """The Blocks app around one Demo (its Runtime is shared by every tab)."""
    shipped = {sc.name: sc for sc in scenes()}
    first = Session()
    first.set_image(shipped[DEMO_SCENE].image, DEMO_SCENE)

    def picture(s: Session) -> str:
        return data_url(overlay(s.image, [r.mask for r in s.regions], s.highlight))

    with gr.Blocks(title="rgpt_rt: talk about regions", analytics_enabled=False) as app:
        state = gr.State(first)
        gr.Markdown(
            "## rgpt_rt · region chat\n"
            f"Model `{model_name}` · {demo.info()}. Write `<region1>`, `<region2>`… in a message to ask about "
            "the numbered regions; the task buttons ask the model's trained questions about the selected region.",
            elem_id="rgpt-model",
        )
        with gr.Row():
            with gr.Column(scale=5):
                canvas = gr.HTML(
                    picture(first),
                    html_template=CANVAS,
                    css_template=(_HERE / "canvas.css").read_text(),
                    js_on_load=(_HERE / "canvas.js").read_text(),
                    elem_id="rgpt-canvas",
                )
                legend = gr.HTML("", elem_id="rgpt-legend")
                regions = gr.Radio([], label="Selected region (for describe, brief, classify)", elem_id="rgpt-regions")
                with gr.Row():
                    remove = gr.Button("Remove selected", size="sm", elem_id="rgpt-remove")
                    clear = gr.Button("Clear regions", size="sm", elem_id="rgpt-clear")
                with gr.Row():
                    scene = gr.Dropdown(list(shipped), value=DEMO_SCENE, label="Shipped scene", elem_id="rgpt-scene")
                    upload = gr.File(label="Or upload an image", type="filepath", elem_id="rgpt-upload")
                with gr.Accordion("Paste a COCO RLE", open=False):
                    rle = gr.Textbox(label='{"size": [h, w], "counts": ...}', lines=3, elem_id="rgpt-rle", max_lines=8)
                    add_rle = gr.Button("Add RLE region", size="sm", elem_id="rgpt-add-rle")
            with gr.Column(scale=6):
                chatbot = gr.Chatbot(label="Chat", height=420, render_markdown=False, elem_id="rgpt-chat")
                with gr.Row():
                    message = gr.Textbox(
                        placeholder="What is <region1>? Is <region1> left of <region2>?",
                        show_label=False,
                        scale=5,
                        elem_id="rgpt-message",
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="rgpt-send")
                    new_chat = gr.Button("New chat", scale=1, elem_id="rgpt-new-chat")
                with gr.Row():
                    describe = gr.Button("Describe", elem_id="rgpt-describe")
                    brief = gr.Button("Brief", elem_id="rgpt-brief")
                    classify = gr.Button("Classify", elem_id="rgpt-classify")
                vocab = gr.Textbox(
                    ", ".join(SHAPES), label="Classify vocabulary (comma-separated)", elem_id="rgpt-vocab"
                )
                with gr.Row():
                    expression = gr.Textbox(
                        label="Refer: which region fits…",
                        placeholder="the large blue cross",
                        scale=4,
                        elem_id="rgpt-expression",
                    )
                    refer = gr.Button("Refer", scale=1, elem_id="rgpt-refer")
                status = gr.Markdown("", elem_id="rgpt-status")
                result = gr.Markdown("", elem_id="rgpt-result")
                timings = gr.Markdown("", elem_id="rgpt-timings")

        def view(s: Session, note: str = "") -> dict:
            """The image, the region list and the status after a change to the image or the regions."""
            choices = [(f"region{k + 1} · {r.label}", k) for k, r in enumerate(s.regions)]
            swatches = " ".join(
                f'<span class="sw" style="background:{color_hex(k)}"></span>region{k + 1}'
                for k in range(len(s.regions))
            )
            return {
                state: s,
                canvas: picture(s),
                legend: f"{_escape(s.source)} · {s.image.shape[1]}x{s.image.shape[0]} · " + (swatches or "no regions"),
                regions: gr.Radio(choices=choices, value=s.selected),
                status: note,
            }

        # ---- image and regions --------------------------------------------------------------------------

        def on_canvas(s: Session, text: str, evt: gr.SelectData) -> dict:
            try:
                kind, value = evt.index, evt.value
                h, w = s.image.shape[:2]
                if kind == "box":
                    k = s.add_box_fraction(*value)
                    return view(s, f"added region{k + 1}: {s.regions[k].label}")
                if kind == "mask":
                    k = s.add_mask(mask_from_data_url(value, h, w))
                    return view(s, f"added region{k + 1}: {s.regions[k].label}")
                if kind == "click":
                    k = s.region_at(*value)
                    if k is None:
                        return {status: "no region there: drag to draw a box"}
                    s.select(k)
                    text = (text or "").rstrip()
                    return {**view(s), message: f"{text} <region{k + 1}>".lstrip()}
                return {status: _error(RgptError(f"unknown canvas event {kind!r}"))}
            except Exception as exc:  # noqa: BLE001 - every failure is a status line, never a traceback
                return {status: _error(exc)}

        def on_scene(s: Session, name: str) -> dict:
            try:
                if name not in shipped:
                    raise RgptError(f"no shipped scene {name!r}")
                s.set_image(shipped[name].image, name)
                return {**view(s, f"loaded {name}"), chatbot: [], result: "", timings: ""}
            except Exception as exc:  # noqa: BLE001
                return {status: _error(exc)}

        def on_upload(s: Session, path: str | None) -> dict:
            if path is None:  # the file was cleared
                return {}
            try:
                s.open_upload(path)
                return {**view(s, f"loaded {s.source}"), chatbot: [], result: "", timings: ""}
            except Exception as exc:  # noqa: BLE001
                return {status: _error(exc)}

        def on_rle(s: Session, text: str) -> dict:
            try:
                k = s.add_rle(text)
                return view(s, f"added region{k + 1}: {s.regions[k].label}")
            except Exception as exc:  # noqa: BLE001
                return {status: _error(exc)}

        def on_select(s: Session, k: int | None) -> dict:
            try:
                s.select(k)
                return {state: s, status: ""}
            except Exception as exc:  # noqa: BLE001
                return {status: _error(exc)}

        def on_remove(s: Session) -> dict:
            try:
                s.remove(s.selected)
                return view(s, "region removed; the others are renumbered")
            except Exception as exc:  # noqa: BLE001
                return {status: _error(exc)}

        def on_clear(s: Session) -> dict:
            s.clear_regions()
            return view(s, "regions cleared")

        def on_new_chat(s: Session) -> dict:
            s.new_chat()
            return {state: s, chatbot: [], status: "new conversation", result: "", timings: ""}

        # ---- answers ------------------------------------------------------------------------------------

        def answer(s: Session, shown: str, stream: Iterator, finish=None) -> Iterator[dict]:
            """Stream one answer into the chat; `finish(text)` returns the result line (and may change the view)."""
            s.messages += [{"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
            yield {state: s, chatbot: list(s.messages), status: "", result: "", timings: "answering…"}
            try:
                for item in stream:
                    if isinstance(item, GenerationResult):
                        s.messages[-1]["content"] = item.text or "(empty answer)"
                        out = {state: s, chatbot: list(s.messages), timings: timing_line(item)}
                        if finish is not None:
                            out.update(finish(item.text))
                        yield out
                    else:
                        s.messages[-1]["content"] += item
                        yield {chatbot: list(s.messages)}
            except Exception as exc:  # noqa: BLE001 - the half-asked turn leaves the chat
                del s.messages[-2:]
                yield {state: s, chatbot: list(s.messages), status: _error(exc), timings: ""}

        def on_send(s: Session, text: str) -> Iterator[dict]:
            try:
                stream = demo.chat(s, text)
                s.parse_message(text)  # fail here, before the chat shows the question
            except Exception as exc:  # noqa: BLE001
                yield {status: _error(exc)}
                return
            yield {message: ""}
            yield from answer(s, text, stream)

        def on_task(task: str):
            def run(s: Session, words: str, expr: str) -> Iterator[dict]:
                try:
                    instruction, which, stream = demo.task(s, task, words, expr)
                except Exception as exc:  # noqa: BLE001
                    yield {status: _error(exc)}
                    return
                refs = " ".join(f"<region{k + 1}>" for k in which)
                name = {"detail": "describe", "brief": "brief", "classify": "classify", "refer": "refer"}[task]
                if task == "refer":
                    shown = f'refer "{expr.strip()}" among {refs}'
                elif task == "classify":
                    shown = f"classify {refs} (vocabulary: {words.strip()})"
                else:
                    shown = f"{name} {refs}"

                def finish(text: str) -> dict:
                    if task == "classify":
                        got = demo.classify_answer(text, words)
                        line = f"classify region{which[0] + 1}: " + (
                            f"**{got}**" if got else "the answer names none of the vocabulary"
                        )
                        return {result: line}
                    if task == "refer":
                        k = demo.refer_answer(text, len(which))
                        s.highlight = k
                        line = f'refer "{_escape(expr.strip())}": ' + (
                            f"**region{k + 1}**" if k is not None else "no region fits"
                        )
                        return {result: line, canvas: picture(s)}
                    return {result: f"{name} region{which[0] + 1}: done"}

                yield from answer(s, shown, stream, finish)

            return run

        edit = [state, canvas, legend, regions, status, message]
        chat_out = [state, chatbot, message, status, result, timings, canvas]
        model = dict(concurrency_id="model", concurrency_limit=1)
        # Every box drawn counts, in order: the canvas's events queue ("once" would drop one drawn while the last
        # is handled) and run one at a time.
        canvas.select(on_canvas, [state, message], edit, trigger_mode="multiple", concurrency_limit=1)
        scene.input(on_scene, [state, scene], [*edit, chatbot, result, timings])
        upload.upload(on_upload, [state, upload], [*edit, chatbot, result, timings])
        add_rle.click(on_rle, [state, rle], edit)
        regions.input(on_select, [state, regions], [state, status])
        remove.click(on_remove, [state], edit)
        clear.click(on_clear, [state], edit)
        new_chat.click(on_new_chat, [state], [state, chatbot, status, result, timings])
        send.click(on_send, [state, message], chat_out, **model)
        message.submit(on_send, [state, message], chat_out, **model)
        for button, task in ((describe, "detail"), (brief, "brief"), (classify, "classify"), (refer, "refer")):
            button.click(on_task(task), [state, vocab, expression], chat_out, **model)
        app.load(lambda s: view(s), [state], edit)
    return app


def serve(demo: Demo, model_name: str, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Build the app and serve it until interrupted."""
    app = build_app(demo, model_name)
    app.queue(default_concurrency_limit=4)
    print(f"rgpt-rt ui: http://{host}:{port}  ({model_name}; {demo.info()}; Ctrl-C stops)", flush=True)
    app.launch(
        server_name=host,
        server_port=port,
        css=PAGE_CSS,
        show_error=False,
        quiet=True,
        ssr_mode=False,
        mcp_server=False,
        footer_links=[],
    )
