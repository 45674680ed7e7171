"""Train the tiny byte-level BPE tokenizer shipped with test checkpoints (locally, from corpus.txt)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).with_name("corpus.txt")

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<region>"]
# Llama-3's control tokens for the vila layout, plus SpatialRGPT's placeholder `<mask>`.
VILA_SPECIALS = LLAVA_SPECIALS + [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<mask>",
]


def train_tokenizer(specials: list[str], vocab_size: int, lines: list[str] | None = None):
    """A byte-level BPE over `lines` (default: corpus.txt); special tokens take ids 0.. in the given order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    if lines is None:
        lines = CORPUS.read_text().splitlines()
    tok.train_from_iterator(lines, trainer)
    return tok


def write_tokenizer(folder: Path, tok, bos: str, eos: str, extra_specials: list[str]) -> None:
    """tokenizer.json plus the config files transformers' AutoTokenizer reads."""
    folder.mkdir(parents=True, exist_ok=True)
    # tokenizers' own JSON, re-dumped with sorted keys so the same training gives the same bytes.
    (folder / "tokenizer.json").write_text(json.dumps(json.loads(tok.to_str()), indent=1, sort_keys=True) + "\n")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "additional_special_tokens": extra_specials,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    special_map = {
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": "<unk>",
        "additional_special_tokens": extra_specials,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, sort_keys=True) + "\n")
