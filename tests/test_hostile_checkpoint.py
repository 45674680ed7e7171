"""Hostile checkpoints (issue 16, classes 3, 7 and 9): a tokenizer that can produce ids past the model's
vocabulary, absurd config values, and tensors or tokenizer files of the wrong kind are refused at load time with
a typed error that names the field, before any model is built."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from rgpt_rt import Runtime
from rgpt_rt.checkpoint import load_model
from rgpt_rt.config import read_config
from rgpt_rt.errors import CheckpointError, ConfigError, RgptError
from rgpt_rt.tokenizer import PromptTokenizer

FRAME = np.full((60, 80, 3), 128, np.uint8)
BOX = (10, 10, 40, 40)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_json(path, edit):
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


def _set(d: dict, dotted: str, value):
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


# ---- class 3: every id the tokenizer can produce fits the model's vocabulary --------------------------------


def _add_tokens(folder, words, special=False):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if special:
        tok.add_special_tokens([AddedToken(w, special=True) for w in words])
    else:
        tok.add_tokens(words)
    tok.save(str(folder / "tokenizer.json"))
    return tok


@pytest.mark.parametrize("special", [False, True], ids=["added", "special"])
def test_tokenizer_ids_fit_the_model_vocabulary(tiny_llava, tmp_path, special):
    path = _copy(tiny_llava, tmp_path / "ck")
    tok = _add_tokens(path, ["zebracrossing"], special=special)
    vocab = read_config(path).llm.vocab_size
    assert tok.token_to_id("zebracrossing") == vocab  # the id the splice would read as image row 0
    with pytest.raises(ConfigError, match=rf"zebracrossing.*id {vocab}.*vocab_size.*{vocab}"):
        Runtime.from_pretrained(path)


def test_tokenizer_ids_fit_the_model_vocabulary_in_the_vila_layout(tiny_vila, tmp_path):
    path = _copy(tiny_vila, tmp_path / "ck")
    _add_tokens(path / "llm", ["<extra_a>", "<extra_b>"], special=True)
    with pytest.raises(ConfigError, match="vocab_size"):
        PromptTokenizer(path, read_config(path))


def test_a_tokenizer_vocabulary_with_an_id_far_past_the_end_is_refused(tiny_llava, tmp_path):
    # 513 entries, so a count-based check (get_vocab_size() <= vocab_size + 1) would not see id 100000.
    path = _copy(tiny_llava, tmp_path / "ck")
    _edit_json(path / "tokenizer.json", lambda d: d["model"]["vocab"].update(zzfar=100000))
    with pytest.raises(ConfigError, match="'zzfar' .id 100000."):
        Runtime.from_pretrained(path)


@pytest.mark.parametrize("field,value", [("bos_token_id", 512), ("eos_token_id", [2, 700]), ("eos_token_id", -1)])
def test_special_token_ids_of_the_config_fit_the_vocabulary(tiny_llava, tmp_path, field, value):
    path = _copy(tiny_llava, tmp_path / "ck")
    _edit_json(path / "config.json", lambda d: _set(d, field, value))
    with pytest.raises(CheckpointError, match=field):
        Runtime.from_pretrained(path)


def test_a_tokenizer_smaller_than_the_vocabulary_is_fine(tiny_llava):
    # Padded vocabularies (llava-hf: 32064 rows for 32002 tokens) are normal: only ids past the end are refused.
    cfg = read_config(tiny_llava)
    big = cfg.__class__(**{**cfg.__dict__, "llm": cfg.llm.__class__(**{**cfg.llm.__dict__, "vocab_size": 600})})
    assert PromptTokenizer(tiny_llava, big).vocab_size == 600


# ---- class 7: absurd configs are refused before the model is built ------------------------------------------

ABSURD = [
    ("num_attention_heads", 0),
    ("num_key_value_heads", 0),
    ("num_key_value_heads", 3),
    ("hidden_size", -64),
    ("hidden_size", 62),
    ("num_hidden_layers", 0),
    ("intermediate_size", True),
    ("vocab_size", "512"),
    ("head_dim", 15),
    ("max_position_embeddings", 10),
    ("rope_theta", 0),
    ("rms_norm_eps", "tiny"),
    ("vision_config.num_attention_heads", 0),
    ("vision_config.hidden_size", 66),
    ("vision_config.patch_size", 0),
    ("vision_config.image_size", 10),
    ("vision_config.num_channels", 4),
    ("vision_config.layer_norm_eps", -1.0),
    ("vision_config.image_std", [0.5, 0.0, 0.5]),
    ("vision_config.image_mean", [0.5, 0.5]),
    ("region_extractor.image_grid", 0),
    ("region_extractor.image_grid", 100000),
    ("region_extractor.image_grid", 2.5),
    ("region_extractor.refine", "deconv0x"),
]


@pytest.mark.parametrize("field,value", ABSURD, ids=[f"{f}={v}" for f, v in ABSURD])
def test_absurd_config_value_is_a_checkpoint_error_naming_the_field(tiny_llava, tmp_path, field, value):
    path = _copy(tiny_llava, tmp_path / "ck")
    _edit_json(path / "config.json", lambda d: _set(d, field, value))
    leaf = field.rsplit(".", 1)[-1]
    with pytest.raises(CheckpointError, match=leaf):
        load_model(path)
    with pytest.raises(CheckpointError, match=leaf):
        Runtime.from_pretrained(path)


@pytest.mark.parametrize(
    "file,field,value",
    [
        ("llm/config.json", "num_attention_heads", 0),
        ("vision_tower/config.json", "patch_size", 0),
        ("region_extractor/config.json", "image_grid", 0),
        ("region_extractor/config.json", "image_grid", 100000),
    ],
)
def test_absurd_vila_config_value_is_a_checkpoint_error_naming_the_field(tiny_vila, tmp_path, file, field, value):
    path = _copy(tiny_vila, tmp_path / "ck")
    _edit_json(path / file, lambda d: _set(d, field, value))
    with pytest.raises(CheckpointError, match=field):
        load_model(path)


@pytest.mark.parametrize(
    "field,value,says,weights",
    [
        ("num_hidden_layers", 3, "3", 2),
        ("vision_config.num_hidden_layers", 3, "3", 2),
        ("region_extractor.refine", "deconv3x", "3", 2),
    ],
)
def test_layer_counts_of_the_config_match_the_weights(tiny_llava, tmp_path, field, value, says, weights):
    path = _copy(tiny_llava, tmp_path / "ck")
    _edit_json(path / "config.json", lambda d: _set(d, field, value))
    leaf = field.rsplit(".", 1)[-1]
    with pytest.raises(CheckpointError, match=rf"{leaf}.*{says}.*weights.*{weights}"):
        load_model(path)


PROBE = """
import json, resource, sys, time
from rgpt_rt.checkpoint import load_model
from rgpt_rt.errors import CheckpointError
with open("/proc/self/status") as f:  # at most 2 GiB more address space: a million modules cannot fit
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), vm + (2 << 30)))
for field, path in json.loads(sys.argv[1]).items():
    t0 = time.perf_counter()
    try:
        load_model(path)
        print(field, "LOADED", 0, False)
    except CheckpointError as exc:
        print(field, "CheckpointError", round(time.perf_counter() - t0, 2), field.rsplit(".", 1)[-1] in str(exc))
    except MemoryError:
        print(field, "MemoryError", round(time.perf_counter() - t0, 2), False)
"""


def test_a_million_layers_fail_fast_before_the_model_is_built(tiny_llava, tmp_path):
    # Today num_hidden_layers=10**6 builds a million meta layers for about 14 minutes before failing.
    cases = {
        "num_hidden_layers": 10**6,
        "vision_config.num_hidden_layers": 10**6,
        "region_extractor.refine": "deconv1000000x",
    }
    dirs = {}
    for i, (field, value) in enumerate(cases.items()):
        dirs[field] = str(_copy(tiny_llava, tmp_path / f"ck{i}"))
        _edit_json(tmp_path / f"ck{i}" / "config.json", lambda d, f=field, v=value: _set(d, f, v))
    r = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(dirs)], capture_output=True, text=True, timeout=90, cwd="/"
    )  # cwd outside the checkout: the installed rgpt_rt, as in the tests
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3, r.stdout + r.stderr
    for line in lines:
        field, kind, seconds, named = line.split()
        assert kind == "CheckpointError" and named == "True", line
        assert float(seconds) < 5.0, line


# ---- class 9: tensors and tokenizer files of the wrong kind -------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.int64, torch.uint8])
def test_weights_of_a_non_float_dtype_are_a_checkpoint_error_naming_the_tensor(tiny_llava, tmp_path, dtype):
    from safetensors.torch import load_file, save_file

    path = _copy(tiny_llava, tmp_path / "ck")
    tensors = load_file(str(path / "model.safetensors"))
    tensors["model.norm.weight"] = tensors["model.norm.weight"].to(dtype)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight.*(I32|BOOL|I64|U8|int|bool)"):
        load_model(path)
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight"):
        Runtime.from_pretrained(path)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"{}", b'{"model": {"type": "Nonsense"}}', b"\x00\xff" * 10, b"[]"],
    ids=["broken-json", "empty-object", "unknown-model", "binary", "list"],
)
def test_corrupt_tokenizer_json_is_a_config_error_naming_the_file(tiny_llava, tmp_path, content):
    path = _copy(tiny_llava, tmp_path / "ck")
    (path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ConfigError, match="tokenizer.json"):
        Runtime.from_pretrained(path)


def test_corrupt_tokenizer_config_json_is_a_config_error_naming_the_file(tiny_llava, tmp_path):
    path = _copy(tiny_llava, tmp_path / "ck")
    (path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ConfigError, match="tokenizer_config.json"):
        Runtime.from_pretrained(path)


def test_config_errors_are_checkpoint_errors_and_value_errors():
    # One except clause catches every refused checkpoint; ValueError keeps older callers working.
    assert issubclass(ConfigError, CheckpointError) and issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, RgptError)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd"])
def test_every_shard_of_a_sharded_checkpoint_stays_inside_its_directory(tiny_llava, tmp_path, shard):
    path = _copy(tiny_llava, tmp_path / "ck")
    shutil.copy(path / "model.safetensors", tmp_path / "outside.safetensors")
    (path / "model.safetensors").unlink()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "outside.safetensors"), "pt") as f:
        weight_map = {k: shard for k in f.keys()}
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="outside"):
        load_model(path)
