"""Where a run starts: a checkpoint (with or without a region module) or a config; the `<region>` token.

A released LLaVA-1.5 checkpoint has the vision tower, the mlp2x_gelu connector and Vicuna but no feature
refinement: its refinement (and a linear region connector, if configured) is initialised here, seeded, with
torch's default initialisation, and named in the log. Its tokenizer has no `<region>`: the token is added as
a special token, and when its id falls outside the embedding table, the table and the LM head grow by the
missing rows, initialised to the mean of the existing rows (LLaVA's rule for new tokens). The runtime never
embeds `<region>` itself (placeholders are spliced as multimodal ids >= vocab_size), but the token keeps the
tokenizer from splitting the placeholder and keeps the vocabulary what RegionGPT checkpoints have.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.layouts import routes, to_theirs
from ..checkpoint.loader import _scan
from ..config import ModelConfig, read_config, read_llava_config
from ..errors import CheckpointError, ConfigError
from ..model.region import FeatureRefiner
from ..model.regiongpt import RegionGPT
from ..tokenizer import find_tokenizer_dir

FRESH_OK = ("refiner.", "region_connector.")  # tensors a plain LLaVA checkpoint lacks and training creates
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def read_start_config(init: str | None, init_config: str | None) -> ModelConfig:
    if init is not None:
        cfg = read_config(init)
    else:
        p = Path(init_config)
        folder = p if p.is_dir() else p.parent
        if not p.is_dir() and p.name != "config.json":
            raise ConfigError(f"--init-config must be a llava config.json (or its directory), got {p}")
        cfg = read_llava_config(folder)
    return dataclasses.replace(cfg, layout="llava")  # training writes the llava layout


def load_start_model(cfg: ModelConfig, init: str | None, seed: int, log=print) -> RegionGPT:
    """fp32 RegionGPT on the CPU: the checkpoint's tensors, fresh seeded ones for what it lacks."""
    torch.manual_seed(seed)
    if init is None:
        return RegionGPT(cfg).float()
    src_cfg = read_config(init)  # the source's own layout decides where its tensors live
    found, unexpected = _scan(Path(init), src_cfg)
    with torch.device("meta"):
        model = RegionGPT(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in found]
    fresh = [k for k in missing if k.startswith(FRESH_OK)]
    hard = [to_theirs(k, routes(src_cfg))[1] for k in missing if not k.startswith(FRESH_OK)]
    misshaped = [
        f"{k}: {list(found[k][2])} vs {list(s)}" for k, s in expected.items() if k in found and found[k][2] != s
    ]
    if hard or unexpected or misshaped:
        raise CheckpointError(
            f"cannot start training from {init}: missing {hard[:10]}, unexpected {unexpected[:10]}, "
            f"wrong shape {misshaped[:10]}"
        )
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for key in expected:
        if key in found:
            by_file.setdefault(found[key][0], []).append(key)
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in keys:
                state[key] = f.get_tensor(found[key][1]).float()
    if fresh:
        c, d = cfg.vision.hidden_size, cfg.llm.hidden_size
        modules = {"refiner.": FeatureRefiner(c, cfg.region), "region_connector.": nn.Linear(c, d)}
        for k in fresh:
            prefix = k.split(".", 1)[0] + "."
            state[k] = modules[prefix].state_dict()[k[len(prefix) :]].float()
        log(f"initialised {len(fresh)} tensors the checkpoint does not have: {', '.join(sorted(fresh))}")
    model.load_state_dict(state, strict=True, assign=True)
    return model


def add_region_token(tok_dir: Path, out_dir: Path, region_token: str, log=print) -> int:
    """Copy the tokenizer files to out_dir, adding `region_token` if absent. Returns the tokenizer's size."""
    from tokenizers import AddedToken, Tokenizer

    src = find_tokenizer_dir(tok_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    for name in TOKENIZER_FILES[1:]:
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / name)
    if tok.token_to_id(region_token) is None:
        tok.add_special_tokens([AddedToken(region_token, special=True, normalized=False)])
        log(f"added {region_token} to the tokenizer as id {tok.token_to_id(region_token)}")
        conf_file = out_dir / "tokenizer_config.json"
        conf = json.loads(conf_file.read_text()) if conf_file.is_file() else {}
        conf["additional_special_tokens"] = [*conf.get("additional_special_tokens", []), region_token]
        conf_file.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    (out_dir / "tokenizer.json").write_text(json.dumps(json.loads(tok.to_str()), indent=1, sort_keys=True) + "\n")
    return tok.get_vocab_size(with_added_tokens=True)


@torch.no_grad()
def grow_vocab(model: RegionGPT, vocab: int, log=print) -> RegionGPT:
    """Grow the embedding table (and an untied LM head) to `vocab` rows; new rows = mean of the old ones."""
    old = model.cfg.llm.vocab_size
    if vocab <= old:
        return model

    def grown(w: torch.Tensor) -> torch.Tensor:
        return torch.cat([w, w.mean(0, keepdim=True).expand(vocab - old, -1)])

    emb = model.llm.model.embed_tokens
    model.llm.model.embed_tokens = nn.Embedding(vocab, emb.embedding_dim, _weight=grown(emb.weight.detach()))
    if model.llm.lm_head is not None:
        head = nn.Linear(emb.embedding_dim, vocab, bias=False)
        head.weight = nn.Parameter(grown(model.llm.lm_head.weight.detach()))
        model.llm.lm_head = head
    cfg = dataclasses.replace(model.cfg, llm=dataclasses.replace(model.cfg.llm, vocab_size=vocab))
    model.cfg, model.llm.cfg = cfg, cfg.llm
    log(f"embeddings grown from {old} to {vocab} rows (new rows: the mean embedding)")
    return model
