"""Loaders for the llava and vila layouts, the tiny checkpoint generator, and their errors."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rgpt_rt.checkpoint import load_model
from rgpt_rt.config import read_config
from rgpt_rt.errors import CheckpointError, ConfigError
from rgpt_rt.testing import make_tiny_checkpoint, make_tiny_model


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _outputs(model, seed=0):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    s = cfg.vision.image_size
    pixels = torch.randn(3, s, s, generator=g)
    masks = (torch.rand(3, s, s, generator=g) > 0.6).float()
    ids = torch.randint(0, cfg.llm.vocab_size, (1, 10), generator=g)
    with torch.no_grad():
        image, regions = model.visual_embeds(pixels, masks)
        table = torch.cat([image, regions])[None]
        ids = torch.cat([ids, cfg.llm.vocab_size + torch.arange(table.shape[1])[None]], dim=1)
        model.llm.setup_caches(1, 64)
        logits = model.llm(model.embed(ids, table), torch.arange(ids.shape[1])[None])
    return image, regions, logits


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_tiny_checkpoint_loads_and_matches_its_source(layout, request):
    path = request.getfixturevalue(f"tiny_{layout}")
    loaded = load_model(path)
    source = make_tiny_model(layout, seed=0)
    for got, ref in zip(_outputs(loaded), _outputs(source)):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert loaded.cfg == source.cfg


def test_layout_specific_structure(tiny_llava, tiny_vila):
    a, b = read_config(tiny_llava), read_config(tiny_vila)
    assert (a.vision.model_type, a.connector.type, a.region.region_connector) == (
        "clip_vision_model",
        "mlp2x_gelu",
        "shared",
    )
    assert (b.vision.model_type, b.connector.type, b.region.region_connector) == (
        "siglip_vision_model",
        "mlp_downsample",
        "linear",
    )
    assert b.llm.rope_scaling["rope_type"] == "llama3" and b.region_token == "<mask>"
    assert a.num_image_tokens == 16 and b.num_image_tokens == 9
    keys = load_file(str(tiny_llava / "model.safetensors")).keys()
    assert "model.mm_projector.0.weight" in keys
    assert "model.region_extractor.feature_refinement_module.3.weight" in keys
    assert "model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight" in keys
    assert "rgb_projector.weight" in load_file(str(tiny_vila / "region_extractor" / "model.safetensors"))


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_same_seed_gives_identical_bytes(layout, tmp_path):
    a = make_tiny_checkpoint(tmp_path / "a", layout=layout, seed=7)
    b = make_tiny_checkpoint(tmp_path / "b", layout=layout, seed=7)
    c = make_tiny_checkpoint(tmp_path / "c", layout=layout, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_sharded_checkpoint_loads_the_same(layout, tmp_path):
    path = make_tiny_checkpoint(tmp_path / "sharded", layout=layout, seed=0, max_shard_bytes=100_000)
    root = path if layout == "llava" else path / "llm"
    assert (root / "model.safetensors.index.json").is_file()
    assert len(list(root.glob("model-*-of-*.safetensors"))) > 2
    for got, ref in zip(_outputs(load_model(path)), _outputs(make_tiny_model(layout, seed=0))):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize(
    "dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)]
)
def test_load_dtype(tiny_llava, dtype, torch_dtype):
    model = load_model(tiny_llava, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {torch_dtype}


def test_unknown_dtype(tiny_llava):
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        load_model(tiny_llava, dtype="int4")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit(file: Path, fn):
    tensors = load_file(str(file))
    fn(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


def test_missing_tensor_is_named(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    _edit(path / "model.safetensors", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(path)


def test_wrong_shape_is_named_with_both_shapes(tiny_vila, tmp_path):
    path = _copy(tiny_vila, tmp_path / "ck")
    _edit(
        path / "mm_projector" / "model.safetensors",
        lambda t: t.update({"layers.2.weight": torch.zeros(64, 100)}),
    )
    with pytest.raises(
        CheckpointError,
        match=r"mm_projector/layers\.2\.weight: checkpoint \[64, 100\], model expects \[64, 256\]",
    ):
        load_model(path)


def test_unexpected_tensor_is_named_and_all_problems_come_together(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")

    def edit(t):
        t["model.some_adapter.weight"] = torch.zeros(3)
        t.pop("model.norm.weight")

    _edit(path / "model.safetensors", edit)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "unexpected tensors: model.some_adapter.weight" in msg and "missing tensors: model.norm.weight" in msg


def test_known_unused_tensors_are_accepted(tiny_vila, tmp_path):
    path = _copy(tiny_vila, tmp_path / "ck")
    top = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**top, "enable_depth": False}))  # depth_projector goes unused
    _edit(
        path / "region_extractor" / "model.safetensors",
        lambda t: t.update({"depth_projector.weight": torch.zeros(64, 64)}),
    )
    _edit(
        path / "vision_tower" / "model.safetensors",
        lambda t: t.update({"vision_model.post_layernorm.weight": torch.ones(64)}),
    )
    load_model(path)


def test_pickle_checkpoint_is_refused_with_conversion_advice(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    (path / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, path / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError, match=r"(?s)pickle weights \(pytorch_model\.bin\).*safetensors only.*save_file"
    ):
        load_model(path)


def test_no_weights_and_bad_index(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found"):
        load_model(path)
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "gone.safetensors"}}))
    with pytest.raises(CheckpointError, match="shard files that do not exist: gone.safetensors"):
        load_model(path)


def test_corrupt_safetensors_is_a_clear_error(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    (path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(path)


def test_config_errors_name_the_field(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    cfg = json.loads((path / "config.json").read_text())
    cfg["mm_projector_type"] = "qformer"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="mm_projector_type 'qformer' is not supported"):
        load_model(path)
    del cfg["vision_config"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="required field 'vision_config' is missing"):
        read_config(path)
    with pytest.raises(ConfigError, match="neither a llava-layout"):
        read_config(tmp_path)


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_tokenizer_files(layout, request):
    from tokenizers import Tokenizer

    path = request.getfixturevalue(f"tiny_{layout}")
    folder = path if layout == "llava" else path / "llm"
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cfg = read_config(path)
    assert tok.get_vocab_size() == cfg.llm.vocab_size
    for special in ("<s>", "</s>", "<image>", "<region>", cfg.region_token):
        assert len(tok.encode(special, add_special_tokens=False).ids) == 1, special
    text = "Describe the red car, please: 12 cats!"
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    conf = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok.token_to_id(conf["eos_token"]) in cfg.llm.eos_token_id
    assert tok.token_to_id(conf["bos_token"]) == cfg.llm.bos_token_id


def test_tokenizer_loads_in_transformers(tiny_llava):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_llava))
    assert tok.eos_token == "</s>" and tok.bos_token == "<s>"
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_llava / "tokenizer.json"))
    text = "USER: <image>\nDescribe <region> ASSISTANT:"
    assert tok.encode(text, add_special_tokens=False) == raw.encode(text, add_special_tokens=False).ids
