"""The prompt tokenizer: tokenizer.json from the checkpoint, and the splice of multimodal ids."""

from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .errors import ConfigError, PromptError
from .prompts import IMAGE, TEMPLATES, split_prompt


def find_tokenizer_dir(path: Path) -> Path:
    for folder in (path, path / "llm"):
        if (folder / "tokenizer.json").is_file():
            return folder
    raise ConfigError(f"no tokenizer.json in {path} or {path / 'llm'}")


class PromptTokenizer:
    def __init__(self, path: str | Path, cfg: ModelConfig):
        from tokenizers import Tokenizer

        folder = find_tokenizer_dir(Path(path))
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.cfg = cfg
        self.vocab_size = cfg.llm.vocab_size
        conf_file = folder / "tokenizer_config.json"
        conf = json.loads(conf_file.read_text()) if conf_file.is_file() else {}
        bos = cfg.llm.bos_token_id
        if bos is None and isinstance(conf.get("bos_token"), str):
            bos = self.tok.token_to_id(conf["bos_token"])
        if bos is None:
            raise ConfigError(f"{path}: no BOS token id in the config or tokenizer_config.json")
        self.bos_id = bos
        stops = set(cfg.llm.eos_token_id)
        template = TEMPLATES.get(cfg.conv_template)
        if template is not None and self.tok.token_to_id(template.stop) is not None:
            stops.add(self.tok.token_to_id(template.stop))
        self.stop_ids = frozenset(stops)

    def encode_text(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_prompt(self, prompt: str | list[tuple[str, bool]], n_image: int, region_rows: list[int]) -> list[int]:
        """Prompt (a string, or prompt_parts' (text, markup) pieces) -> ids with BOS; the image token becomes
        V..V+n_image-1 and placeholder k becomes V + n_image + region_rows[k]. Only markup is split at the image
        token and placeholders; plain pieces (earlier answers) are encoded as text whatever they contain."""
        v = self.vocab_size
        ids = [self.bos_id]
        k = 0
        seen_image = False
        chunks: list[tuple[str, bool]] = []  # (text, is a placeholder)
        for text, markup in [(prompt, True)] if isinstance(prompt, str) else prompt:
            if not markup:
                chunks.append((text, False))
                continue
            for chunk in split_prompt(text, self.cfg.region_token):
                chunks.append((chunk, chunk in (IMAGE, "<region>", self.cfg.region_token)))
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
