"""Runtime.score: the log-likelihood of candidate answers, on every backend, against an independent full-sequence
forward of the reference model (no KV cache: every candidate appended to the prompt and run in one pass)."""

import numpy as np
import pytest
import torch

from rgpt_rt import Runtime
from rgpt_rt.checkpoint import load_model
from rgpt_rt.prompts import TEMPLATES

BOX = (128, 128, 232, 198)
INSTR = "What category name best describes the region represented by <region>?"
CANDIDATES = ["car", "tree", "traffic light", "a red car parked on the street"]


def _reference(path, rt, frame):
    """Sum of log p(answer tokens | prompt) from one forward over prompt + answer, in float64."""
    model = load_model(path)  # a fresh model: no KV cache set up, so attention is causal over the given tokens
    visual = rt.encode(frame, BOX)
    prompt = rt._prompt_ids(visual, [(INSTR, None)], [0])
    template = TEMPLATES[rt.cfg.conv_template]
    stop = rt.tokenizer.tok.token_to_id(template.stop)
    out = []
    for c in CANDIDATES:
        answer = rt.tokenizer.encode_text(template.answer_prefix + c) + [stop]
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            table = torch.as_tensor(np.asarray(visual.table, np.float32))[None]
            logits = model.llm(model.embed(ids, table), torch.arange(ids.shape[1])[None])[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)))
    return out


def test_score_matches_a_full_sequence_forward_and_reuses_the_prompt(tiny_llava, sample_frame):
    rt = Runtime.from_pretrained(tiny_llava)
    want = _reference(tiny_llava, rt, sample_frame)
    got = rt.score(sample_frame, INSTR, BOX, CANDIDATES)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    again = rt.score(sample_frame, INSTR, BOX, CANDIDATES)  # the prompt's KV now comes from the cache
    assert rt.backend.kv_prefix.reused > 0
    np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-4)
    one = rt.score(sample_frame, INSTR, BOX, CANDIDATES[1:2])
    np.testing.assert_allclose(one, want[1:2], rtol=1e-5, atol=1e-4)
    # generation after scoring is unaffected by the rows scoring wrote
    fresh = Runtime.from_pretrained(tiny_llava).generate(sample_frame, INSTR, BOX, max_new_tokens=6)
    assert rt.generate(sample_frame, INSTR, BOX, max_new_tokens=6).token_ids == fresh.token_ids


def test_score_on_the_onnx_backend_equals_torch(tiny_llava, sample_frame, tmp_path):
    pytest.importorskip("onnxruntime")
    from build_engine.builder import build

    eng = build(tiny_llava, tmp_path / "eng", precision="fp32", log=lambda *a: None)
    want = Runtime.from_pretrained(tiny_llava).score(sample_frame, INSTR, BOX, CANDIDATES)
    got = Runtime.from_pretrained(eng, backend="onnx").score(sample_frame, INSTR, BOX, CANDIDATES)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_score_refuses_bad_candidates(rt_llava, sample_frame):
    with pytest.raises(TypeError, match="candidates must be a non-empty list"):
        rt_llava.score(sample_frame, INSTR, BOX, "car")
    with pytest.raises(TypeError, match="non-empty string"):
        rt_llava.score(sample_frame, INSTR, BOX, ["car", ""])
