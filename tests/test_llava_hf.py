"""The llava-hf layout (transformers' LlavaForConditionalGeneration, both key spellings) as an image-only model,
checked against transformers' own LLaVA on the same random weights, and zero-region prompts on every layout."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.config import read_config  # noqa: E402
from rgpt_rt.errors import ConfigError, PromptError  # noqa: E402
from rgpt_rt.inputs import preprocess_frame  # noqa: E402
from rgpt_rt.testing import make_tiny_checkpoint  # noqa: E402

QUESTION = "Describe the image in detail."


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_llava_hf", layout="llava-hf", seed=7)


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(5).integers(0, 256, (37, 61, 3), dtype=np.uint8)  # odd, not square: padded


def _hf_first_logits(hf, rt: Runtime, frame: np.ndarray) -> np.ndarray:
    """transformers' LLaVA on our prompt: the image tokens spelled as its image_token_index, our pixels."""
    visual = rt.encode(frame, None)
    ids = rt._prompt_ids(visual, [(QUESTION, None)], [])
    vocab, image_id = rt.cfg.llm.vocab_size, hf.config.image_token_id
    assert sum(i >= vocab for i in ids) == rt.cfg.num_image_tokens
    input_ids = torch.tensor([[image_id if i >= vocab else i for i in ids]])
    pixels = torch.from_numpy(preprocess_frame(frame, rt.cfg.vision))[None]
    with torch.no_grad():
        return hf(input_ids=input_ids, pixel_values=pixels).logits[0, -1].double().numpy()


def _check_against_hf(path, frame, hf=None):
    rt = Runtime.from_pretrained(path, backend="torch")
    assert rt.cfg.layout == "llava-hf" and not rt.cfg.has_region_extractor
    if hf is None:
        hf, info = transformers.LlavaForConditionalGeneration.from_pretrained(str(path), output_loading_info=True)
        # the vision tower's final norm is unused (features come from layer -2), so neither side stores it
        assert all("post_layernorm" in k for k in info["missing_keys"]), info
        assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    hf = hf.eval().float()
    ours = rt.generate(frame, QUESTION, None, max_new_tokens=3, return_first_logits=True).first_logits
    ref = _hf_first_logits(hf, rt, frame)
    err = np.abs(ours.astype(np.float64) - ref).max()
    assert err <= 1e-4 * max(1.0, np.abs(ref).max()), f"first-token logits differ from transformers by {err}"
    assert int(np.argmax(ours)) == int(np.argmax(ref))
    return rt, hf


def test_hub_spelling_matches_transformers_llava(tiny_hf, frame):
    cfg = json.loads((tiny_hf / "config.json").read_text())
    assert cfg["model_type"] == "llava" and "text_config" in cfg
    _check_against_hf(tiny_hf, frame)


def test_transformers5_spelling_loads_the_same(tiny_hf, frame, tmp_path):
    """transformers 5's in-memory keys (model.language_model., lm_head., model.vision_tower. without
    vision_model., model.multi_modal_projector.), written as a checkpoint, load to the same model."""
    from safetensors.torch import save_file

    hf = transformers.LlavaForConditionalGeneration.from_pretrained(str(tiny_hf)).eval()
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.startswith("model.language_model.") for k in state) and "lm_head.weight" in state
    dst = tmp_path / "v5"
    dst.mkdir()
    for f in tiny_hf.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    _check_against_hf(dst, frame, hf)


def test_region_prompts_on_an_image_only_model_are_a_clear_error(tiny_hf, frame):
    rt = Runtime.from_pretrained(tiny_hf, backend="torch")
    for call in (
        lambda: rt.describe(frame, (2, 2, 20, 20)),
        lambda: rt.describe_many(frame, [(2, 2, 20, 20)]),
        lambda: rt.ask(frame, "What is <region>?", (2, 2, 20, 20)),
    ):
        with pytest.raises(PromptError, match="no region extractor"):
            call()


def test_hub_config_without_default_fields_reads_transformers_defaults(tiny_hf, tmp_path):
    """llava-1.5-7b-hf's text_config omits every LlamaConfig default (hidden_size 4096, 32 layers, ...)."""
    dst = tmp_path / "hub"
    dst.mkdir()
    cfg = json.loads((tiny_hf / "config.json").read_text())
    cfg["text_config"] = {"model_type": "llama", "vocab_size": 32064, "max_position_embeddings": 4096}
    cfg["vision_config"] = {
        "model_type": "clip_vision_model",
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "image_size": 336,
        "patch_size": 14,
    }
    (dst / "config.json").write_text(json.dumps(cfg))
    c = read_config(dst)
    assert (c.llm.hidden_size, c.llm.num_layers, c.llm.num_heads, c.llm.intermediate_size) == (4096, 32, 32, 11008)
    assert (c.vision.grid, c.num_image_tokens, c.region.refine_depth) == (24, 576, 0)
    cfg["vision_feature_select_strategy"] = "full"
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="vision_feature_select_strategy"):
        read_config(dst)


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_zero_region_prompt_on_a_region_model(layout, request, frame):
    """A RegionGPT answers a prompt without regions (the caption pipeline's stage 1): the same text as the
    image-prefix-only prompt through ask(), and no <region> embedding in it."""
    rt = Runtime.from_pretrained(request.getfixturevalue(f"tiny_{layout}"), backend="torch")
    res = rt.generate(frame, QUESTION, None, max_new_tokens=4)
    assert res.finish_reason in ("eos", "length") and len(res.token_ids) >= 1
    assert rt.ask(frame, QUESTION, [], max_new_tokens=4) == res.text
    with pytest.raises(PromptError, match="placeholders"):
        rt.ask(frame, "What is <region>?", None)
