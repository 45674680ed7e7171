"""The chatbot demo's logic without a browser: regions from every source, the messages for bad input, streamed
answers equal the runtime's own, multi-turn reuses the prefix. (tests/test_ui_browser.py drives the page.)"""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rgpt_rt import cli
from rgpt_rt.assets import DEMO_OBJECT, DEMO_SCENE, scene
from rgpt_rt.errors import FrameError, MaskError, PromptError
from rgpt_rt.generation import GenerationResult
from rgpt_rt.inputs import rle_decode, rle_encode, to_masks
from rgpt_rt.prompts import category_instruction, task_instruction
from rgpt_rt.ui.render import PALETTE, display_size, mask_from_data_url, overlay
from rgpt_rt.ui.session import MAX_UI_REGIONS, Demo, Session, parse_vocabulary


@pytest.fixture
def s():
    sess = Session()
    sess.set_image(scene(DEMO_SCENE).image, DEMO_SCENE)
    return sess


def run(stream):
    """Drain an answer stream: (the pieces joined, the GenerationResult)."""
    items = list(stream)
    assert isinstance(items[-1], GenerationResult) and not any(isinstance(i, GenerationResult) for i in items[:-1])
    return "".join(items[:-1]), items[-1]


# ---- regions -----------------------------------------------------------------------------------------------


def test_a_box_drawn_as_fractions_is_the_runtimes_box_mask_at_image_pixels(s):
    k = s.add_box_fraction(45 / 128, 87 / 128, 79 / 128, 52 / 128)  # corners in any order
    assert k == 0 and s.selected == 0 and s.regions[0].label == "box 45,52,79,87"
    np.testing.assert_array_equal(s.regions[0].mask, to_masks([(45, 52, 79, 87)], (128, 128))[0] > 0.5)


def test_a_box_without_area_or_outside_the_image_is_an_empty_region(s):
    with pytest.raises(MaskError, match="empty region: the box .* has no area"):
        s.add_box_fraction(0.5, 0.5, 0.5, 0.9)
    with pytest.raises(MaskError, match="empty region: the box covers no pixel"):
        s.add_box_fraction(1.1, 1.1, 1.5, 1.5)
    assert s.regions == []


def test_a_painted_canvas_becomes_the_mask_at_the_image_size():
    # The canvas is the displayed picture's size (4x for a 128 image); painted pixels are opaque.
    w, h = display_size(128, 128)
    assert (w, h) == (512, 512)
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).rectangle((40, 80, 119, 199), fill=(255, 255, 255, 255))  # pixels 10..29 x 20..49
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    mask = mask_from_data_url("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), 128, 128)
    want = np.zeros((128, 128), bool)
    want[20:50, 10:30] = True
    np.testing.assert_array_equal(mask, want)


def test_a_painted_mask_that_is_empty_or_not_a_png_is_refused(s):
    with pytest.raises(MaskError, match="empty region: nothing is painted"):
        s.add_mask(np.zeros((128, 128), bool))
    with pytest.raises(MaskError, match="not a readable PNG"):
        mask_from_data_url("data:image/png;base64,bm90IGEgcG5n", 128, 128)
    with pytest.raises(MaskError, match="did not arrive as a PNG"):
        mask_from_data_url("javascript:alert(1)", 128, 128)


def test_a_pasted_coco_rle_is_the_objects_segmentation(s):
    obj = scene(DEMO_SCENE).objects[DEMO_OBJECT]
    k = s.add_rle(json.dumps(obj["segmentation"]))
    np.testing.assert_array_equal(s.regions[k].mask, rle_decode(obj["segmentation"]))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "paste a COCO RLE first"),
        ("{size: 1", "the RLE is not valid JSON"),
        (json.dumps(rle_encode(np.ones((64, 64), bool))), "differs from the frame"),
        (json.dumps(rle_encode(np.zeros((128, 128), bool))), "empty region: the RLE has no pixel set"),
    ],
)
def test_a_bad_rle_gives_a_message_that_names_the_problem(s, text, message):
    with pytest.raises(MaskError, match=message):
        s.add_rle(text)


def test_a_file_that_is_not_an_image_names_the_file(s, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("these are notes, not pixels")
    with pytest.raises(FrameError, match="notes.png is not an image this demo can read"):
        s.open_upload(str(bad))
    assert s.source == DEMO_SCENE and s.image is not None  # the old image stays


def test_an_uploaded_image_replaces_the_scene_and_starts_over(s, tmp_path):
    s.add_box_fraction(0.1, 0.1, 0.5, 0.5)
    s.history.append(("q", "a"))
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(path)
    s.open_upload(str(path))
    assert s.image.shape == (200, 300, 3) and s.source == "photo.jpg"
    assert s.regions == [] and s.history == [] and s.selected is None


def test_the_demo_holds_a_limited_number_of_regions(s):
    for _ in range(MAX_UI_REGIONS):
        s.add_box_fraction(0.1, 0.1, 0.5, 0.5)
    with pytest.raises(MaskError, match=f"too many regions: the demo holds at most {MAX_UI_REGIONS}"):
        s.add_box_fraction(0.1, 0.1, 0.5, 0.5)


def test_a_click_picks_the_smallest_region_under_it_and_removal_renumbers(s):
    s.add_box_fraction(0, 0, 1, 1)
    s.add_box_fraction(0.25, 0.25, 0.5, 0.5)
    assert s.region_at(0.3, 0.3) == 1 and s.region_at(0.9, 0.9) == 0
    s.remove(0)
    assert len(s.regions) == 1 and s.region_at(0.9, 0.9) is None and s.region_at(0.3, 0.3) == 0


def test_the_overlay_draws_each_region_in_its_own_colour():
    img = np.full((64, 64, 3), 128, np.uint8)
    m1, m2 = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    m1[5:20, 5:20], m2[40:60, 40:60] = True, True
    pic = np.asarray(overlay(img, [m1, m2]))
    assert pic.shape == (512, 512, 3)  # 8x: small images are enlarged for drawing
    for k, (y, x) in enumerate([(100, 100), (400, 400)]):  # 35% of the region's colour over the image
        want = 0.65 * 128 + 0.35 * np.array(PALETTE[k], np.float64)
        np.testing.assert_allclose(pic[y, x], want, atol=1)
    np.testing.assert_array_equal(pic[250, 250], [128, 128, 128])  # outside every region: the image


# ---- messages and tasks -------------------------------------------------------------------------------------


def test_region_references_become_placeholders_with_their_masks_in_order(s):
    s.add_box_fraction(0.0, 0.0, 0.25, 0.25)
    s.add_box_fraction(0.5, 0.5, 1.0, 1.0)
    instruction, masks = s.parse_message("Is <region2> left of <region1>? And <region2>?")
    assert instruction == "Is <region> left of <region>? And <region>?"
    assert [m.tobytes() for m in masks] == [s.regions[i].mask.tobytes() for i in (1, 0, 1)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the message is empty"),
        ("What is <region>?", "write <region1>, <region2>"),
        (
            "Compare <region1> and <region3>.",
            "too many regions for the question: it names <region3> but the image has 2",
        ),
    ],
)
def test_a_message_that_does_not_fit_the_regions_is_refused(s, text, message):
    s.add_box_fraction(0.0, 0.0, 0.25, 0.25)
    s.add_box_fraction(0.5, 0.5, 1.0, 1.0)
    with pytest.raises(PromptError, match=message):
        s.parse_message(text)


def test_tasks_without_a_region_or_vocabulary_or_expression_are_refused(s, rt_llava):
    demo = Demo(rt_llava)
    with pytest.raises(MaskError, match="classify needs a region"):
        demo.task(s, "classify", "cross")
    s.add_box_fraction(0.1, 0.1, 0.5, 0.5)
    with pytest.raises(PromptError, match="the vocabulary is empty"):
        demo.task(s, "classify", " , ")
    with pytest.raises(PromptError, match="refer needs an expression"):
        demo.task(s, "refer", expression="  ")
    s.selected = None
    with pytest.raises(MaskError, match="describe takes one region: select one"):
        demo.task(s, "detail")
    assert parse_vocabulary("circle, ring ,, star") == ["circle", "ring", "star"]


def test_a_task_streams_the_runtimes_own_answer(s, rt_llava):
    demo = Demo(rt_llava, max_new_tokens=12)
    k = s.add_box_fraction(45 / 128, 52 / 128, 79 / 128, 87 / 128)
    instruction, which, stream = demo.task(s, "classify", "circle, cross")
    assert instruction == category_instruction(["circle", "cross"]) and which == [k]
    text, result = run(stream)
    ref = rt_llava.generate(s.image, instruction, [s.regions[k].mask], max_new_tokens=12)
    assert text == result.text == ref.text and result.token_ids == ref.token_ids
    assert result.timings.tokens == len(ref.token_ids) and result.timings.vision_ms > 0


def test_a_conversation_equals_the_runtimes_chat_and_reuses_the_prefix(s, rt_llava):
    demo = Demo(rt_llava, max_new_tokens=8)
    s.add_box_fraction(0.0, 0.0, 0.5, 0.5)
    s.add_box_fraction(0.5, 0.5, 1.0, 1.0)
    first, r1 = run(demo.chat(s, "What is <region1>?"))
    second, r2 = run(demo.chat(s, "Is it left of <region2>?"))
    chat = rt_llava.chat(s.image)
    assert first == chat.ask("What is <region>?", s.regions[0].mask[None], max_new_tokens=8)
    assert second == chat.ask("Is it left of <region>?", s.regions[1].mask[None], max_new_tokens=8)
    assert s.history == chat.history
    # The second turn's prompt starts with the first turn's: its KV was reused, not recomputed.
    assert r2.timings.reused_tokens >= r1.timings.prompt_tokens
    run(demo.task(s, "detail")[2])  # a task is asked on its own: the conversation is unchanged
    assert s.history == chat.history and task_instruction("detail") not in [q for q, _ in s.history]


def test_an_answer_that_overflows_the_context_is_an_error_not_a_crash(s, rt_llava):
    demo = Demo(rt_llava, max_new_tokens=4)
    s.add_box_fraction(0.0, 0.0, 0.5, 0.5)
    with pytest.raises(PromptError, match="context"):
        run(demo.chat(s, "<region1> " + "word " * rt_llava.cfg.llm.max_position_embeddings))
    assert s.history == []


def test_demo_info_names_backend_precision_and_device(rt_llava):
    assert Demo(rt_llava).info() == "backend torch · precision fp32 · device cpu"


# ---- the app's messages and the command line ----------------------------------------------------------------


def test_the_status_line_is_one_line_without_a_traceback():
    pytest.importorskip("gradio")
    from rgpt_rt.ui.app import _error

    assert _error(MaskError("empty region: <x>")) == '<span class="rgpt-error">⚠ empty region: &lt;x&gt;</span>'
    line = _error(ZeroDivisionError("division by zero"))
    assert "internal error (ZeroDivisionError: division by zero)" in line and "Traceback" not in line


def test_ui_without_gradio_says_which_extra_to_install(monkeypatch, capsys, tiny_llava):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert cli.main(["ui", "--model", str(tiny_llava)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "rgpt-rt: error: the demo needs gradio, which comes with the ui extra: pip install 'rgpt_rt[ui]'"


def test_ui_listens_on_this_machine_only_by_default():
    args = cli.build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 7860, None)
