"""Runtime end to end on tiny checkpoints of both layouts."""

import threading

import numpy as np
import pytest
import torch

from rgpt_rt.generation import GenerationConfig, Sampler
from rgpt_rt.inputs import Box, Polygon, preprocess_frame, preprocess_masks, rle_encode
from rgpt_rt.model.generate import decode_n_tokens, greedy, prefill
from rgpt_rt.prompts import TEMPLATES, VICUNA_SYSTEM, build_prompt

BOX = (128, 128, 232, 198)
GEN = dict(max_new_tokens=12)


@pytest.fixture(params=["llava", "vila"])
def rt(request):
    return request.getfixturevalue(f"rt_{request.param}")


def test_vicuna_template_is_exactly_the_design_string():
    instr = "Describe in detail the object located at <region> in the image."
    assert build_prompt([(instr, None)], "vicuna_v1") == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\n" + instr + " ASSISTANT:"
    )
    two = build_prompt([("Q1 <region>", "A1"), ("Q2", None)], "vicuna_v1")
    assert two.endswith("USER: <image>\nQ1 <region> ASSISTANT: A1</s>USER: Q2 ASSISTANT:")


def test_describe_runs_on_both_layouts(rt, sample_frame):
    res = rt.generate(sample_frame, "Describe in detail the object located at <region> in the image.", BOX, **GEN)
    assert res.finish_reason in ("eos", "length", "stop") and 0 < len(res.token_ids) <= 12
    t = res.timings
    assert t.tokens == len(res.token_ids) and t.prompt_tokens > rt.cfg.num_image_tokens
    assert min(t.preprocess_ms, t.vision_ms, t.prefill_ms, t.decode_ms) > 0
    assert rt.describe(sample_frame, BOX, **GEN) == res.text
    brief = rt.generate(sample_frame, "Provide a short description of <region>.", BOX, **GEN).text
    assert rt.describe(sample_frame, BOX, task="brief", **GEN) == brief


def _hand_built_ids(rt, n_image):
    """The DESIGN.md tokenisation contract, spelled out step by step for the llava template."""
    tok, v = rt.tokenizer, rt.cfg.llm.vocab_size
    enc = tok.encode_text
    head = VICUNA_SYSTEM + " USER: "
    return (
        [rt.cfg.llm.bos_token_id]
        + enc(head)
        + list(range(v, v + n_image))
        + enc("\nDescribe in detail the object located at ")
        + [v + n_image + 0]
        + enc(" in the image. ASSISTANT:")
    )


def test_hand_built_tokens_through_the_model_equal_describe(rt_llava, sample_frame):
    rt = rt_llava
    res = rt.generate(
        sample_frame, "Describe in detail the object located at <region> in the image.", BOX, max_new_tokens=16
    )
    model = rt.backend.model
    cfg = rt.cfg
    frame_px = torch.from_numpy(preprocess_frame(sample_frame, cfg.vision))
    mask = np.zeros(sample_frame.shape[:2], np.float32)
    mask[BOX[1] : BOX[3], BOX[0] : BOX[2]] = 1
    mask_px = torch.from_numpy(preprocess_masks(mask[None], cfg.vision.image_size))
    with torch.no_grad():
        image, regions = model.visual_embeds(frame_px, mask_px)
        ids = torch.tensor([_hand_built_ids(rt, image.shape[0])])
        model.llm.setup_caches(1, ids.shape[1] + 20)
        embeds = model.embed(ids, torch.cat([image, regions])[None])
        first = greedy(prefill(model.llm, embeds, torch.tensor([ids.shape[1]])))
        toks = decode_n_tokens(model.llm, first, torch.tensor([ids.shape[1]]), 16)[0].tolist()
    eos = set(rt.tokenizer.stop_ids)
    expected = []
    for t in toks:
        if t in eos:
            break
        expected.append(t)
    assert res.token_ids == expected


def test_equivalent_region_forms_give_identical_results(rt, sample_frame):
    h, w = sample_frame.shape[:2]
    x0, y0, x1, y1 = BOX
    rect = np.zeros((h, w), bool)
    rect[y0:y1, x0:x1] = True
    forms = [
        Box(*BOX),
        BOX,
        rect,
        rect.astype(np.uint8) * 255,
        Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]),
        rle_encode(rect),
        rle_encode(rect, compressed=False),
    ]
    results = [
        rt.generate(sample_frame, "Provide a short description of <region>.", f, return_first_logits=True, **GEN)
        for f in forms
    ]
    for r in results[1:]:
        assert r.token_ids == results[0].token_ids
        # Not bit-identical: later calls reuse the cached KV of the shared prefix (template head + image), so
        # only the suffix is recomputed, in a different-shaped (differently rounded) pass.
        np.testing.assert_allclose(r.first_logits, results[0].first_logits, rtol=1e-5, atol=1e-5)


def test_bgr_pil_path_and_bytes_frames_agree(rt_llava, sample_frame, tmp_path):
    from PIL import Image

    from rgpt_rt.cli import SAMPLE_IMAGE

    ref = rt_llava.generate(
        sample_frame, "Provide a short description of <region>.", BOX, return_first_logits=True, **GEN
    )
    for frame, kw in (
        (sample_frame[..., ::-1].copy(), {"bgr": True}),
        (Image.fromarray(sample_frame), {}),
        (SAMPLE_IMAGE, {}),
        (SAMPLE_IMAGE.read_bytes(), {}),
    ):
        got = rt_llava.generate(
            frame, "Provide a short description of <region>.", BOX, return_first_logits=True, **kw, **GEN
        )
        np.testing.assert_allclose(got.first_logits, ref.first_logits, rtol=1e-5, atol=1e-5)


def test_multi_turn_chat_equals_one_shot_with_the_whole_history(rt, sample_frame):
    chat = rt.chat(sample_frame, [BOX])
    a1 = chat.ask("What is <region>?", **GEN)
    a2 = chat.ask("What colour is it?", **GEN)
    a3 = chat.ask("Compare <region> with <region>.", masks=[BOX, (0, 0, 60, 60)], **GEN)
    # One shot: the whole conversation as one prompt, through the lowest-level generate call.
    shot = rt.generate(
        sample_frame,
        "Compare <region> with <region>.",
        [BOX, BOX, (0, 0, 60, 60)],
        history=[("What is <region>?", a1), ("What colour is it?", a2)],
        **GEN,
    )
    assert shot.text == a3
    # and the prompt the chat built is the template's multi-turn format
    t = TEMPLATES[rt.cfg.conv_template]
    prompt = build_prompt([("What is <region>?", a1), ("What colour is it?", None)], rt.cfg.conv_template)
    assert f"{t.answer_prefix}{a1}{t.answer_end}{t.user}What colour is it?{t.assistant}" in prompt
    assert len(chat.history) == 3


def test_stream_concatenates_to_the_answer(rt, sample_frame):
    instr = "Describe in detail the object located at <region> in the image."
    pieces = list(rt.stream(sample_frame, instr, BOX, max_new_tokens=20))
    assert "".join(pieces) == rt.ask(sample_frame, instr, BOX, max_new_tokens=20)
    assert len(pieces) > 1


def test_describe_many_equals_sequential_describe(rt, sample_frame):
    boxes = [BOX, (10, 40, 90, 160), (240, 10, 300, 70)]
    many = rt.describe_many(sample_frame, boxes, **GEN)
    assert many == [rt.describe(sample_frame, b, **GEN) for b in boxes]


def test_four_threads_equal_sequential(rt_llava, sample_frame):
    jobs = [
        (BOX, "detail"),
        ((10, 40, 90, 160), "brief"),
        ((240, 10, 300, 70), "detail"),
        ((0, 150, 320, 240), "brief"),
    ]
    sequential = [rt_llava.describe(sample_frame, b, task=t, **GEN) for b, t in jobs] * 2
    results = [None] * 8
    errors = []

    def work(i):
        try:
            b, t = jobs[i % 4]
            results[i] = rt_llava.describe(sample_frame, b, task=t, **GEN)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and results == sequential


def test_refer_and_classify_parse_answers(rt_llava, sample_frame, monkeypatch):
    from rgpt_rt.generation import GenerationResult

    def fake(text):
        return lambda *a, **k: GenerationResult(text, [], "eos")

    monkeypatch.setattr(rt_llava, "generate", fake("Region [2]"))
    assert rt_llava.refer(sample_frame, [BOX, (0, 0, 50, 50)], "the tree") == 1
    monkeypatch.setattr(rt_llava, "generate", fake("No corresponding options found."))
    assert rt_llava.refer(sample_frame, [BOX, (0, 0, 50, 50)], "a whale") is None
    monkeypatch.setattr(rt_llava, "generate", fake("Region [7]"))
    assert rt_llava.refer(sample_frame, [BOX, (0, 0, 50, 50)], "x") is None  # out of range is not an answer
    monkeypatch.setattr(rt_llava, "generate", fake("It is a Teddy Bear."))
    assert rt_llava.classify(sample_frame, BOX) == "teddy bear"
    monkeypatch.setattr(rt_llava, "generate", fake("car"))
    assert rt_llava.classify(sample_frame, BOX, vocabulary=["vehicle", "car", "tree"]) == "car"
    assert rt_llava.classify(sample_frame, BOX, vocabulary=["tree"]) is None


def test_refer_and_classify_prompts(rt_llava, sample_frame, monkeypatch):
    from rgpt_rt.prompts import category_instruction, parse_refer, refer_instruction

    calls, generate = [], rt_llava.generate

    def spy(*args, **kwargs):
        calls.append((args, generate(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(rt_llava, "generate", spy)
    res_refer = rt_llava.refer(sample_frame, [BOX, (0, 0, 50, 50), (200, 0, 300, 80)], "the red car", **GEN)
    [((_, instruction, masks), answer)] = calls  # refer asks once, with its template and all three masks
    assert instruction == refer_instruction(3, "the red car") and len(masks) == 3
    assert res_refer == parse_refer(answer.text, 3)

    assert refer_instruction(3, "the red car") == (
        "From the provided masks denoted by <region>, <region> and <region>, "
        'which one fits "the red car"? Answer the question using the '
        "template Region [x]."
    )
    assert "using COCO-80 category names" in category_instruction(None)
    assert "using cat, dog category names" in category_instruction(["cat", "dog"])


def test_generation_options(rt_llava, sample_frame):
    instr = "Provide a short description of <region>."
    a = rt_llava.generate(sample_frame, instr, BOX, temperature=1.0, top_k=20, top_p=0.9, seed=3, max_new_tokens=16)
    b = rt_llava.generate(sample_frame, instr, BOX, temperature=1.0, top_k=20, top_p=0.9, seed=3, max_new_tokens=16)
    c = rt_llava.generate(sample_frame, instr, BOX, temperature=1.0, seed=4, max_new_tokens=16)
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids
    short = rt_llava.generate(sample_frame, instr, BOX, max_new_tokens=3)
    assert len(short.token_ids) == 3 and short.finish_reason == "length"
    full = rt_llava.generate(sample_frame, instr, BOX, max_new_tokens=16)
    stop = full.text[3:6]
    cut = rt_llava.generate(sample_frame, instr, BOX, max_new_tokens=16, stop=[stop])
    assert cut.finish_reason == "stop" and stop not in cut.text and full.text.startswith(cut.text)
    pen = rt_llava.generate(sample_frame, instr, BOX, max_new_tokens=16, repetition_penalty=5.0)
    assert pen.token_ids != full.token_ids or len(set(full.token_ids)) == len(full.token_ids)


def test_sampler_by_hand():
    logits = np.array([0.0, 3.0, 1.0, 2.5])
    assert Sampler(GenerationConfig())(logits, []) == 1
    assert Sampler(GenerationConfig(repetition_penalty=2.0))(logits, [1]) == 3  # 3.0 / 2 < 2.5
    s = Sampler(GenerationConfig(temperature=1.0, top_k=1, seed=0))
    assert {s(logits, []) for _ in range(20)} == {1}
    s = Sampler(GenerationConfig(temperature=1.0, top_p=0.5, seed=0))  # p(1) = 0.54 alone reaches 0.5
    assert {s(logits, []) for _ in range(20)} == {1}
    s = Sampler(GenerationConfig(temperature=1.0, seed=0))
    counts = np.bincount([s(logits, []) for _ in range(4000)], minlength=4) / 4000
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(counts, p, atol=0.03)


def test_empty_masks_allowed_on_request(rt_llava, sample_frame):
    empty = np.zeros(sample_frame.shape[:2], bool)
    res = rt_llava.generate(
        sample_frame, "Provide a short description of <region>.", empty, allow_empty_masks=True, **GEN
    )
    assert len(res.token_ids) > 0
