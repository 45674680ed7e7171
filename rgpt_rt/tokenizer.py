"""The prompt tokenizer: tokenizer.json from the checkpoint, and the splice of multimodal ids."""

from __future__ import annotations

from pathlib import Path

from .config import ModelConfig, read_json
from .errors import ConfigError, PromptError
from .prompts import DEPTH, IMAGE, TEMPLATES, split_prompt


def find_tokenizer_dir(path: Path) -> Path:
    for folder in (path, path / "llm"):
        if (folder / "tokenizer.json").is_file():
            return folder
    raise ConfigError(f"no tokenizer.json in {path} or {path / 'llm'}")


def _read_tokenizer(file: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for every kind of bad file
        raise ConfigError(
            f"{file} is not a readable tokenizer.json ({exc}); copy it again from the checkpoint"
        ) from None


def check_vocabulary(tok, vocab_size: int, file: Path) -> None:
    """Every id the tokenizer can produce (its vocabulary and every added or special token) must be below the
    model's vocab_size: ids >= vocab_size address the multimodal table, so one past the end would be read as an
    image embedding. A tokenizer smaller than the vocabulary (padded embedding tables) is fine."""
    vocab = tok.get_vocab(with_added_tokens=True)  # token -> id
    if not vocab:
        raise ConfigError(f"{file} has an empty vocabulary")
    if max(vocab.values()) >= vocab_size:
        past = sorted((i, t) for t, i in vocab.items() if i >= vocab_size)
        shown = ", ".join(f"{t!r} (id {i})" for i, t in past[:5]) + (" …" if len(past) > 5 else "")
        raise ConfigError(
            f"{file}: {shown} {'is' if len(past) == 1 else 'are'} past the end of the model's vocabulary "
            f"(vocab_size {vocab_size}, ids 0..{vocab_size - 1}); ids from {vocab_size} on address the image and "
            "region embeddings. The tokenizer does not belong to this model (tokens added without resizing the "
            "embeddings?): use the tokenizer the checkpoint was trained with"
        )


def generation_eos_ids(folder: Path) -> set[int]:
    """The end ids of the checkpoint's generation_config.json (next to its config; `eos_token_id` is an id or a
    list of ids), or none when there is no such file."""
    file = folder / "generation_config.json"
    if not file.is_file():
        return set()
    eos = read_json(file).get("eos_token_id")
    ids = [eos] if isinstance(eos, int) and not isinstance(eos, bool) else eos if isinstance(eos, list) else []
    if eos is not None and not (ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise ConfigError(f"{file}: eos_token_id must be an integer or a list of integers, got {eos!r}")
    return set(ids)


class PromptTokenizer:
    def __init__(self, path: str | Path, cfg: ModelConfig):
        folder = find_tokenizer_dir(Path(path))
        file = folder / "tokenizer.json"
        self.tok = _read_tokenizer(file)
        self.cfg = cfg
        self.vocab_size = cfg.llm.vocab_size
        check_vocabulary(self.tok, self.vocab_size, file)
        conf_file = folder / "tokenizer_config.json"
        conf = read_json(conf_file) if conf_file.is_file() else {}
        bos = cfg.llm.bos_token_id
        if bos is None and isinstance(conf.get("bos_token"), str):
            bos = self.tok.token_to_id(conf["bos_token"])
        if bos is None:
            raise ConfigError(f"{path}: no BOS token id in the config or tokenizer_config.json")
        self.bos_id = bos
        stops = set(cfg.llm.eos_token_id)
        stops |= generation_eos_ids(folder)  # e.g. Llama-3's <|end_of_text|> and <|eot_id|>
        template = TEMPLATES.get(cfg.conv_template)
        if template is not None and self.tok.token_to_id(template.stop) is not None:
            stops.add(self.tok.token_to_id(template.stop))
        self.stop_ids = frozenset(stops)
        for name, ids in (("bos_token_id", [self.bos_id]), ("eos_token_id", sorted(self.stop_ids))):
            bad = [i for i in ids if not 0 <= i < self.vocab_size]
            if bad:
                raise ConfigError(
                    f"{path}: {name} {bad} is outside the model's vocabulary (vocab_size {self.vocab_size})"
                )

    def encode_text(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_prompt(
        self,
        prompt: str | list[tuple[str, bool]],
        n_image: int,
        region_rows: list[int],
        depth_rows: list[int] = (),
    ) -> list[int]:
        """Prompt (a string, or prompt_parts' (text, markup) pieces) -> ids with BOS; the image token becomes
        V..V+n_image-1, placeholder k becomes V + n_image + region_rows[k] and the k-th `<depth>` V + n_image +
        depth_rows[k]. Only markup is split at the image token and placeholders; plain pieces (earlier answers)
        are encoded as text whatever they contain."""
        v = self.vocab_size
        ids = [self.bos_id]
        k = d = 0
        seen_image = False
        chunks: list[tuple[str, bool]] = []  # (text, is a placeholder)
        for text, markup in [(prompt, True)] if isinstance(prompt, str) else prompt:
            if not markup:
                chunks.append((text, False))
                continue
            for chunk in split_prompt(text, self.cfg.region_token):
                chunks.append((chunk, chunk in (IMAGE, "<region>", self.cfg.region_token, DEPTH)))
        text = ""
        for chunk, special in chunks + [("", True)]:
            if not special:
                text += chunk  # adjacent text is encoded as one piece, as a single string prompt would be
                continue
            if text:
                ids.extend(self.encode_text(text))
                text = ""
            if chunk == IMAGE:
                if seen_image:
                    raise PromptError("the instruction must not contain <image>: the template places the image once")
                seen_image = True
                ids.extend(range(v, v + n_image))
            elif chunk == DEPTH:
                if d >= len(depth_rows):
                    raise PromptError(
                        f"the prompt has more <depth> placeholders than depth embeddings ({len(depth_rows)}): each "
                        "<depth> stands for one region's depth, and needs a depth map"
                    )
                ids.append(v + n_image + depth_rows[d])
                d += 1
            elif chunk:
                if k >= len(region_rows):
                    raise PromptError(f"the prompt has more <region> placeholders than regions ({len(region_rows)})")
                ids.append(v + n_image + region_rows[k])
                k += 1
        if k != len(region_rows):
            raise PromptError(f"the prompt has {k} <region> placeholders but {len(region_rows)} regions were given")
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)
