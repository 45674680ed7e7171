"""Parts of SpatialRGPT's released-checkpoint behaviour (issue 17) that do not need its resize preprocessing or
depth input: every end id of generation_config.json stops generation, `Region [0]` is the first region in a
vila checkpoint's answers, and a vision tower saved without the `vision_model.` key prefix loads."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rgpt_rt import Runtime
from rgpt_rt.generation import GenerationResult

BOX = (128, 128, 232, 198)
INSTR = "Describe in detail the object located at <region> in the image."


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_generation_stops_at_every_end_id_of_generation_config(layout, request, sample_frame, tmp_path):
    path = _copy(request.getfixturevalue(f"tiny_{layout}"), tmp_path / "ckpt")
    free = Runtime.from_pretrained(path).generate(sample_frame, INSTR, BOX, max_new_tokens=6, ignore_eos=True)
    third = free.token_ids[2]
    folder = path / "llm" if layout == "vila" else path
    llm_cfg = json.loads((folder / "config.json").read_text())
    eos = llm_cfg["eos_token_id"] if isinstance(llm_cfg["eos_token_id"], list) else [llm_cfg["eos_token_id"]]
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [*eos, third]}))
    rt = Runtime.from_pretrained(path)
    assert third in rt.tokenizer.stop_ids and set(eos) <= rt.tokenizer.stop_ids
    res = rt.generate(sample_frame, INSTR, BOX, max_new_tokens=6)
    first_stop = next(i for i, t in enumerate(free.token_ids) if t in rt.tokenizer.stop_ids)
    assert res.finish_reason == "eos" and res.token_ids == free.token_ids[:first_stop]


def test_a_malformed_generation_config_is_a_config_error(tiny_llava, tmp_path):
    from rgpt_rt.errors import ConfigError

    path = _copy(tiny_llava, tmp_path / "ckpt")
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": "</s>"}))
    with pytest.raises(ConfigError, match="eos_token_id must be an integer or a list"):
        Runtime.from_pretrained(path)


@pytest.mark.parametrize(
    "layout,answer,want", [("vila", "Region [0]", 0), ("vila", "Region [1]", 1), ("llava", "Region [0]", None)]
)
def test_refer_reads_region_numbers_in_the_checkpoints_own_base(
    layout, answer, want, request, sample_frame, monkeypatch
):
    rt = request.getfixturevalue(f"rt_{layout}")
    monkeypatch.setattr(rt, "generate", lambda *a, **k: GenerationResult(answer, [], "eos"))
    assert rt.refer(sample_frame, [BOX, (0, 0, 50, 50)], "the car") == want


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_a_vision_tower_without_the_vision_model_prefix_loads(layout, request, sample_frame, tmp_path):
    src = request.getfixturevalue(f"tiny_{layout}")
    path = _copy(src, tmp_path / "ckpt")
    file = path / "vision_tower" / "model.safetensors" if layout == "vila" else path / "model.safetensors"
    prefix = "vision_model." if layout == "vila" else "model.vision_tower.vision_tower.vision_model."
    tensors = load_file(str(file))
    renamed = {k.replace(prefix, prefix[: -len("vision_model.")], 1): v for k, v in tensors.items()}
    assert sum(k != r for k, r in zip(tensors, renamed)) > 10  # the tower's keys really changed
    index = file.parent / "model.safetensors.index.json"
    assert not index.exists()
    save_file(renamed, str(file), metadata={"format": "pt"})
    want = Runtime.from_pretrained(src).generate(sample_frame, INSTR, BOX, max_new_tokens=4, return_first_logits=True)
    got = Runtime.from_pretrained(path).generate(sample_frame, INSTR, BOX, max_new_tokens=4, return_first_logits=True)
    np.testing.assert_array_equal(got.first_logits, want.first_logits)


def test_the_chat_template_is_inferred_from_the_llm_when_the_config_names_none(tiny_vila, sample_frame, tmp_path):
    from rgpt_rt.config import infer_template

    path = _copy(tiny_vila, tmp_path / "ckpt")
    top = json.loads((path / "config.json").read_text())
    assert "conv_template" not in top  # as SpatialRGPT's release writes it
    rt = Runtime.from_pretrained(path)
    assert rt.cfg.conv_template == "llama_3"  # the tokenizer has Llama-3's header and end-of-turn tokens
    vicuna = Runtime.from_pretrained(path, conv_template="vicuna_v1")  # the caller overrides
    assert vicuna.cfg.conv_template == "vicuna_v1" and vicuna.tokenizer.cfg.conv_template == "vicuna_v1"
    a = rt.generate(sample_frame, INSTR, BOX, max_new_tokens=2, return_first_logits=True)
    b = vicuna.generate(sample_frame, INSTR, BOX, max_new_tokens=2, return_first_logits=True)
    assert a.timings.prompt_tokens != b.timings.prompt_tokens  # a different prompt around the same question
    with pytest.raises(ValueError, match="conv_template must be one of"):
        Runtime.from_pretrained(path, conv_template="chatml")
    other = tmp_path / "other_llm"
    other.mkdir()
    (other / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "</s>"}], "model": {"vocab": {}}}))
    assert infer_template(other) == "vicuna_v1"  # e.g. a Vicuna or Llama-2 LLM
