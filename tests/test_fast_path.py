"""The fast-path machinery on the CPU (tiny checkpoints): shared-prefix KV reuse, batched describe_many,
the per-frame cache, chat KV reuse, the static (graph-capturable) decode step and the int8 decoder."""

import numpy as np
import pytest
import torch

from rgpt_rt import Runtime
from rgpt_rt.backends.torch_backend import TorchBackend
from rgpt_rt.cache import ByteLRU
from rgpt_rt.tokenizer import PromptTokenizer

BOXES = [(128, 128, 232, 198), (10, 40, 90, 160), (240, 10, 300, 70), (0, 150, 320, 240), (60, 60, 120, 120)]
GEN = dict(max_new_tokens=16)


def _runtime(path, **kw):
    be = TorchBackend(path, **kw)
    return Runtime(be, PromptTokenizer(path, be.cfg))


@pytest.mark.parametrize("layout", ["llava", "vila"])
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_batched_describe_many_equals_sequential_describe(layout, prefix_cache, request, sample_frame):
    path = request.getfixturevalue(f"tiny_{layout}")
    rt = _runtime(path, prefix_cache=prefix_cache)
    batched = rt.describe_many(sample_frame, BOXES, **GEN)
    sequential = [rt.describe(sample_frame, b, **GEN) for b in BOXES]
    unbatched = rt.describe_many(sample_frame, BOXES, batch=False, **GEN)
    assert batched == sequential == unbatched
    assert len(set(batched)) > 1  # the regions really got different answers
    # Rows stop on their own: generation lengths differ when some row meets end-of-sequence or its limit.
    brief = rt.describe_many(sample_frame, BOXES, task="brief", max_new_tokens=5, stop=["e"])
    assert brief == [rt.describe(sample_frame, b, task="brief", max_new_tokens=5, stop=["e"]) for b in BOXES]


def test_shared_prefix_is_not_recomputed(tiny_llava, sample_frame):
    rt = _runtime(tiny_llava)
    cold = _runtime(tiny_llava, prefix_cache=False)
    first = rt.generate(sample_frame, "Provide a short description of <region>.", BOXES[0], **GEN)
    assert rt.backend.kv_prefix.reused == 0
    second = rt.generate(sample_frame, "Provide a short description of <region>.", BOXES[1], **GEN)
    n_image = rt.cfg.num_image_tokens
    # BOS + template head + image tokens + "\n" text before the region token were all reused
    assert rt.backend.kv_prefix.reused > n_image
    assert (
        second.token_ids
        == cold.generate(sample_frame, "Provide a short description of <region>.", BOXES[1], **GEN).token_ids
    )
    assert first.token_ids != second.token_ids or first.text == second.text
    # another frame shares only the text before the image: BOS and the template head
    other = np.ascontiguousarray(sample_frame[::-1])
    rt.generate(other, "Provide a short description of <region>.", BOXES[1], **GEN)
    ids = rt._prompt_ids(rt.encode(other, [BOXES[1]]), [("Provide a short description of <region>.", None)], [0])
    first_image = next(i for i, t in enumerate(ids) if t >= rt.cfg.llm.vocab_size)
    assert rt.backend.kv_prefix.reused == first_image > 0


def test_frame_cache_skips_the_vision_tower(tiny_llava, sample_frame):
    rt = _runtime(tiny_llava)
    r1 = rt.generate(sample_frame, "Provide a short description of <region>.", BOXES[0], **GEN)
    calls = []
    orig = rt.backend.model.encode_image
    rt.backend.model.encode_image = lambda px: calls.append(1) or orig(px)
    r2 = rt.generate(sample_frame, "Describe in detail the object located at <region> in the image.", BOXES[2], **GEN)
    assert calls == [] and rt.backend.frames.hits >= 1
    rt.generate(
        np.ascontiguousarray(sample_frame[:, ::-1]), "Provide a short description of <region>.", BOXES[0], **GEN
    )
    assert calls == [1]
    assert r2.timings.preprocess_ms < r1.timings.preprocess_ms + 50  # no frame resize on a hit


def test_byte_lru_is_bounded():
    lru = ByteLRU(100)
    for i in range(10):
        lru.put(str(i), i, 30)
    assert lru.nbytes <= 100 and len(lru) == 3 and lru.get("9") == 9 and lru.get("0") is None
    lru.get("7")
    lru.put("x", "x", 30)
    assert lru.get("7") == 7 and lru.get("8") is None  # least recently used went first
    lru.put("huge", 0, 1000)
    assert lru.get("huge") is None


def test_chat_reuses_earlier_turns(tiny_vila, sample_frame):
    rt = _runtime(tiny_vila)
    chat = rt.chat(sample_frame, [BOXES[0]])
    chat.ask("What is <region>?", **GEN)
    turn1_len = len(rt._prompt_ids(rt.encode(sample_frame, [BOXES[0]]), [("What is <region>?", None)], [0]))
    chat.ask("What colour is it?", **GEN)
    assert rt.backend.kv_prefix.reused >= turn1_len  # the whole first turn's prompt came from the cache


def test_static_decode_step_equals_dynamic():
    from rgpt_rt.testing import make_tiny_model

    llm = make_tiny_model("llava").llm
    llm.setup_caches(2, 40)
    ids = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        llm(llm.embed(ids), torch.arange(12)[None].expand(2, -1))
        tok = torch.tensor([[5], [7]])
        pos = torch.tensor([[12], [9]])
        dyn = llm(llm.embed(tok), pos)
        llm(llm.embed(ids), torch.arange(12)[None].expand(2, -1))
        sta = llm(llm.embed(tok), pos, static=True)
    torch.testing.assert_close(sta, dyn, rtol=1e-5, atol=1e-5)


def test_int8_torch_backend_quality(tiny_llava, sample_frame):
    fp32 = _runtime(tiny_llava)
    int8 = _runtime(tiny_llava, precision="int8")
    from rgpt_rt.model.quant import Int8Linear

    assert sum(isinstance(m, Int8Linear) for m in int8.backend.model.modules()) == 14
    cos = []
    for box in BOXES[:3]:
        a = fp32.generate(sample_frame, "Describe <region>.", box, return_first_logits=True, max_new_tokens=8)
        b = int8.generate(sample_frame, "Describe <region>.", box, return_first_logits=True, max_new_tokens=8)
        cos.append(
            float(a.first_logits @ b.first_logits / np.linalg.norm(a.first_logits) / np.linalg.norm(b.first_logits))
        )
    assert min(cos) > 0.99, f"int8 torch backend first-logits cosine {cos}"


def test_ignore_eos_generates_exactly_n(tiny_llava, sample_frame):
    rt = _runtime(tiny_llava)
    res = rt.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=40, ignore_eos=True)
    assert len(res.token_ids) == 40 and res.finish_reason == "length"


def test_frame_evicted_between_check_and_use(tiny_llava, sample_frame):
    rt = _runtime(tiny_llava)
    rt.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=2)
    orig = rt.backend.has_frame
    calls = []

    def has_frame_then_evict(key):
        answer = orig(key)
        calls.append(answer)
        if len(calls) == 1:
            rt.backend.frames.clear()  # another thread evicts the frame right after the unlocked check
        return answer

    rt.backend.has_frame = has_frame_then_evict
    res = rt.generate(sample_frame, "Describe <region>.", BOXES[1], max_new_tokens=2)
    assert calls == [True, False] and len(res.token_ids) == 2
