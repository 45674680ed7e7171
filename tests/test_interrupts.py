"""Nothing silently wrong after an interruption or a reused buffer (issue 16, classes 1 and 2).

Invariants:
- an exception at any point of a call (KeyboardInterrupt included) leaves every cache (the KV prefix of row 0,
  the per-frame cache, the per-row KV of a batch) valid or invalidated: every later answer equals a fresh
  runtime's;
- the runtime owns what it keeps past a call: a Chat answers about the pixels and masks it was given, even when
  the caller overwrites those buffers afterwards.
"""

import numpy as np
import pytest

from rgpt_rt import Runtime
from rgpt_rt.backends import torch_backend, torch_sampling
from rgpt_rt.errors import PromptError
from rgpt_rt.model import fused_decode, llama

BOX_A, BOX_B, BOX_C = (128, 128, 232, 198), (10, 40, 90, 160), (240, 10, 300, 70)
GEN = {"max_new_tokens": 6, "ignore_eos": True}
ASK_A = ("Describe in detail the object located at <region> in the image.", BOX_A)
ASK_B = ("Is <region> left of <region>?", [BOX_A, BOX_B])


def _answers(rt, frame):
    """The requests whose answers must not change: each shares a prefix with the others."""
    out = []
    for instr, masks in (ASK_A, ASK_B):
        r = rt.generate(frame, instr, masks, return_first_logits=True, **GEN)
        out.append((r.token_ids, r.first_logits))
    out.append((rt.describe_many(frame, [BOX_A, BOX_C], **GEN), None))
    return out


def _assert_same(got, want):
    for (tokens, logits), (ref_tokens, ref_logits) in zip(got, want):
        assert tokens == ref_tokens
        if ref_logits is not None:
            np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-5)


class _Interrupt:
    """Raise KeyboardInterrupt at the n-th call of obj.name (then behave normally)."""

    def __init__(self, monkeypatch, obj, name, n):
        self.calls, self.n = 0, n
        orig = getattr(obj, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt(f"interrupt at call {self.n} of {name}")
            return orig(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapped)


# Points inside one call: the vision stage, every layer of the prefill and of the decode steps (the tiny model
# has 2 layers, so call n of DecoderLayer.forward is layer (n-1)%2 of pass (n-1)//2), the KV writes, the device
# sampler, and the text decoding of the loop.
# The fused decode step calls the native ops instead of DecoderLayer.forward and KVCache.write.
POINTS = [(llama.DecoderLayer, "forward", n) for n in (1, 3, 6, 11)] + [
    (llama.KVCache, "write", 2),
    (torch_sampling.TorchSampler, "pick", 1),
    (torch_sampling.TorchSampler, "pick", 4),
    (torch_backend.TorchBackend, "visual_embeds", 1),
    (torch_backend.TorchBackend, "reserve", 1),
    (fused_decode, "rope_kv_write", 2),
    (fused_decode, "decode_attention", 3),
]


@pytest.mark.parametrize("decode", ["reference", "fused"])
def test_no_stale_cache_after_an_interruption_at_any_point_of_a_call(tiny_llava, sample_frame, monkeypatch, decode):
    fresh = _answers(Runtime.from_pretrained(tiny_llava, decode=decode), sample_frame)
    rt = Runtime.from_pretrained(tiny_llava, decode=decode)
    _assert_same(_answers(rt, sample_frame), fresh)  # the caches now hold these prompts
    interrupted = 0
    for obj, name, n in POINTS:
        for victim in (
            lambda: rt.generate(sample_frame, "Provide a short description of <region>.", BOX_B, **GEN),
            lambda: rt.describe_many(sample_frame, [BOX_C, BOX_A], **GEN),
        ):
            with monkeypatch.context() as m:
                _Interrupt(m, obj, name, n)
                try:
                    victim()
                except KeyboardInterrupt:
                    interrupted += 1
            _assert_same(_answers(rt, sample_frame), fresh)
    assert interrupted >= len(POINTS)  # most points were reached (a few belong to the other decode mode)


def test_no_stale_kv_after_an_interrupted_prefill_on_the_onnx_backend(tiny_llava, sample_frame, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from build_engine.builder import build
    from rgpt_rt.backends import onnx_backend

    eng = build(tiny_llava, tmp_path / "eng", precision="fp32", log=lambda *a: None)
    fresh = _answers(Runtime.from_pretrained(eng, backend="onnx"), sample_frame)
    rt = Runtime.from_pretrained(eng, backend="onnx")
    _assert_same(_answers(rt, sample_frame), fresh)
    for n in (1, 2, 5):
        with monkeypatch.context() as m:
            _Interrupt(m, onnx_backend.OnnxBackend, "_run", n)
            with pytest.raises(KeyboardInterrupt):
                rt.generate(sample_frame, "Provide a short description of <region>.", BOX_B, **GEN)
        _assert_same(_answers(rt, sample_frame), fresh)


def test_a_chat_owns_its_frame_and_masks_when_the_caller_reuses_the_buffers(rt_llava, sample_frame, monkeypatch):
    seen = []  # each turn's first-token logits: the random tiny model's text alone barely depends on pixels
    generate = rt_llava.generate

    def spy(*args, **kwargs):
        result = generate(*args, return_first_logits=True, **kwargs)
        seen.append(result.first_logits)
        return result

    monkeypatch.setattr(rt_llava, "generate", spy)
    mask = np.zeros(sample_frame.shape[:2], np.float32)
    mask[128:198, 128:232] = 1
    want_chat = rt_llava.chat(sample_frame.copy(), [mask.copy()])
    want = [want_chat.ask("What is <region>?", **GEN), want_chat.ask("Describe <region> in detail.", **GEN)]
    want_logits, seen[:] = list(seen), []

    buf, mbuf = sample_frame.copy(), mask.copy()
    chat = rt_llava.chat(buf, [mbuf])
    got = [chat.ask("What is <region>?", **GEN)]
    buf[:] = 255 - buf  # the camera loop writes its next frame into the same buffer
    mbuf[:] = 0
    mbuf[0:40, 0:40] = 1
    got.append(chat.ask("Describe <region> in detail.", **GEN))
    assert got == want
    for a, b in zip(seen, want_logits):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_describe_many_works_through_any_number_of_regions_in_batches(rt_llava, sample_frame):
    boxes = [BOX_A, BOX_B, BOX_C, (0, 150, 320, 240), (50, 50, 60, 60)]
    one_by_one = [rt_llava.describe(sample_frame, b, **GEN) for b in boxes]
    assert rt_llava.describe_many(sample_frame, boxes, batch_size=2, **GEN) == one_by_one
    assert rt_llava.describe_many(sample_frame, boxes, batch=False, **GEN) == one_by_one


def test_more_regions_than_one_call_can_pool_is_a_mask_error(rt_llava):
    from rgpt_rt.errors import MaskError

    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(MaskError, match="at most 4096"):
        rt_llava.encode(frame, np.ones((4097, 4, 4), np.float32))


def test_classify_refuses_a_vocabulary_given_as_one_string(rt_llava, sample_frame):
    with pytest.raises(TypeError, match="vocabulary must be a list"):
        rt_llava.classify(sample_frame, BOX_A, vocabulary="car")


def test_earlier_answers_are_never_parsed_as_placeholders(rt_llava, sample_frame):
    """Placeholders are the caller's instruction syntax: a model's earlier answer (history, or a Chat's own) may
    contain "<region>" or "<image>" as text, and is encoded as text."""
    answer = "It is <region>, next to <image> and <region>."
    history = [("What is <region>?", answer)]
    res = rt_llava.generate(sample_frame, "And <region>?", [BOX_A, BOX_B], history=history, **GEN)
    assert len(res.token_ids) == GEN["max_new_tokens"]
    visual = rt_llava.encode(sample_frame, [BOX_A, BOX_B])
    ids = rt_llava._prompt_ids(visual, [*history, ("And <region>?", None)], [0, 1])
    vocab = rt_llava.cfg.llm.vocab_size
    region_ids = [i for i in ids if i >= vocab + visual.n_image]
    assert region_ids == [vocab + visual.n_image, vocab + visual.n_image + 1]  # only the two instructions' marks
    chat = rt_llava.chat(sample_frame, [BOX_A])
    chat.history.append(("What is <region>?", answer))  # as if the model had answered that
    chat._turn_masks.append(chat.masks)
    assert isinstance(chat.ask("Describe <region>.", **GEN), str)
    with pytest.raises(PromptError, match="2 <region> placeholders but 1"):
        rt_llava.generate(sample_frame, "<region> or <region>?", [BOX_A], history=[], **GEN)


@pytest.mark.parametrize("decode", ["reference", "fused"])
def test_seeded_samples_of_a_region_do_not_depend_on_the_other_rows_of_a_batch(tiny_llava, sample_frame, decode):
    rt = Runtime.from_pretrained(tiny_llava, decode=decode)
    boxes = [BOX_A, BOX_B, BOX_C]
    opts = {"temperature": 1.0, "top_p": 0.9, "seed": 3, "max_new_tokens": 10, "ignore_eos": True}
    one_by_one = rt.describe_many(sample_frame, boxes, batch=False, **opts)
    assert rt.describe_many(sample_frame, boxes, **opts) == one_by_one
    assert rt.describe_many(sample_frame, boxes, batch_size=2, **opts) == one_by_one


def test_scoring_many_candidates_keeps_the_kv_cache_small(rt_llava, sample_frame):
    from rgpt_rt.prompts import COCO80

    cands = list(COCO80[:40])
    got = rt_llava.score(sample_frame, "What is <region>?", BOX_A, cands)
    assert rt_llava.backend.model.llm.max_batch <= 16
    alone = [rt_llava.score(sample_frame, "What is <region>?", BOX_A, [c])[0] for c in cands[::13]]
    np.testing.assert_allclose(got[::13], alone, rtol=1e-5, atol=1e-4)


def test_no_stale_kv_after_an_interruption_on_the_trt_backend(tiny_llava, sample_frame, tmp_path, monkeypatch):
    """The trt backend's per-row KV sets through the TensorRT/cuda-python double (tests/trt_double)."""
    pytest.importorskip("onnxruntime")
    import trt_double

    from build_engine.cli import main as build_main
    from rgpt_rt.backends import trt_backend

    trt_double.install(monkeypatch)
    eng = tmp_path / "trt"
    assert build_main([str(tiny_llava), "--out", str(eng), "--backend", "trt"]) == 0
    fresh = _answers(Runtime.from_pretrained(eng, backend="onnx"), sample_frame)
    rt = Runtime.from_pretrained(eng, backend="trt")
    _assert_same(_answers(rt, sample_frame), fresh)
    for name, n in (("_decode", 1), ("_decode", 3), ("_decode", 6), ("_truncate", 1), ("_copy", 1), ("_sync", 4)):
        for victim in (
            lambda: rt.generate(sample_frame, "Provide a short description of <region>.", BOX_B, **GEN),
            lambda: rt.describe_many(sample_frame, [BOX_C, BOX_A], **GEN),
        ):
            with monkeypatch.context() as m:
                _Interrupt(m, trt_backend.TrtBackend, name, n)
                try:
                    victim()
                except KeyboardInterrupt:
                    pass
            trt_double.cudart.DEVICE.flush()  # work queued before the interrupt runs, as it would on a GPU
            _assert_same(_answers(rt, sample_frame), fresh)
    for n in (1, 2, 4, 7):  # a signal landing exactly as a row's state is stored (between two statements)
        rt.backend.state = _RaisingStore(rt.backend.state, n)
        try:
            rt.generate(sample_frame, "Provide a short description of <region>.", BOX_B, **GEN)
        except KeyboardInterrupt:
            pass
        rt.backend.state = list(rt.backend.state)
        _assert_same(_answers(rt, sample_frame), fresh)


class _RaisingStore(list):
    """A list whose n-th item assignment raises KeyboardInterrupt instead of storing."""

    def __init__(self, items, n):
        super().__init__(items)
        self.n = n

    def __setitem__(self, i, v):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt("interrupt at a state store")
        super().__setitem__(i, v)

    def append(self, v):
        super().append(v)
