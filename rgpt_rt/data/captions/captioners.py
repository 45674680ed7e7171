"""Captioners: whatever answers an image-only prompt. Both stages of the pipeline are image-only prompts (the
whole image, then a region's close-up crop), so any model the runtime loads serves (a RegionGPT, or a plain
LLaVA-1.5 in the llava-hf layout), and so does an OpenAI-compatible chat endpoint serving a larger VLM.

    Captioner.caption(images, prompts) -> [Answer]   one answer per (image, prompt), in order
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ...errors import RgptError


class CaptionerError(RgptError, RuntimeError):
    """The captioner cannot answer (endpoint unreachable or answering nonsense, model not loadable)."""


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # "eos" | "stop" | "length"


@dataclass(frozen=True)
class GenSettings:
    max_new_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }


class Captioner(Protocol):
    name: str  # provenance: which model answered

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[Answer]: ...


class RuntimeCaptioner:
    """A model the runtime loads (checkpoint or engine directory). batch_size > 1 decodes the prompts together
    (Runtime.ask_many: each crop encoded once, the shared prefix prefilled once); 1 answers them one at a time."""

    def __init__(
        self,
        model: str,
        gen: GenSettings,
        backend: str = "auto",
        device: str = "cpu",
        precision: str | None = None,
        batch_size: int = 16,
    ):
        from ...runtime import Runtime

        self.rt = Runtime.from_pretrained(model, backend=backend, device=device, precision=precision)
        self.name = f"rgpt_rt:{model}"
        self.gen, self.batch_size = gen, batch_size

    def _kwargs(self) -> dict[str, Any]:
        g = self.gen
        kw: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature}
        if g.temperature > 0:
            kw.update(top_p=g.top_p, seed=g.seed)
        return kw

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[Answer]:
        if self.batch_size == 1:
            results = [self.rt.generate(im, q, None, **self._kwargs()) for im, q in zip(images, prompts)]
        else:
            results = self.rt.ask_many(images, prompts, batch_size=self.batch_size, **self._kwargs())
        return [Answer(r.text, r.finish_reason) for r in results]


def png_data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class EndpointCaptioner:
    """An OpenAI-compatible chat completions endpoint (vLLM, SGLang, TGI, llama.cpp server, a hosted API).

    url: the API base (`http://host:8000/v1`) or the full `.../chat/completions` URL. Images go as base64 PNG
    data URLs in the user message. Up to `concurrency` requests are in flight; a connection error, a timeout or
    a 429/5xx is retried `retries` times with backoff, then a CaptionerError stops the job (a restart resumes)."""

    def __init__(
        self,
        url: str,
        model: str,
        gen: GenSettings,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
    ):
        if not url.startswith(("http://", "https://")):
            raise CaptionerError(f"endpoint URL must start with http:// or https://, got {url!r}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model, self.gen, self.api_key = model, gen, api_key
        self.concurrency, self.timeout, self.retries = max(1, concurrency), timeout, retries
        self.name = f"endpoint:{model}@{self.url}"

    def _request(self, image: np.ndarray, prompt: str) -> Answer:
        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": png_data_url(image)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": self.gen.max_new_tokens,
            "temperature": self.gen.temperature,
        }
        if self.gen.temperature > 0:
            body.update(top_p=self.gen.top_p, seed=self.gen.seed)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(30.0, 0.5 * 2**attempt))
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code == 429 or exc.code >= 500:
                    continue
                raise CaptionerError(f"{self.url} refused the request: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CaptionerError(f"{self.url} answered with something that is not JSON ({exc})") from None
            try:
                choice = reply["choices"][0]
                text = choice["message"]["content"] or ""
                finish = choice.get("finish_reason") or "stop"
            except (KeyError, IndexError, TypeError):
                raise CaptionerError(
                    f"{self.url} answered without choices[0].message.content: {str(reply)[:200]}"
                ) from None
            return Answer(str(text).strip(), "length" if finish == "length" else "stop" if finish != "eos" else "eos")
        raise CaptionerError(f"{self.url} failed {self.retries + 1} times; last error: {last}")

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[Answer]:
        if len(images) == 1:
            return [self._request(images[0], prompts[0])]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._request, images, prompts))
