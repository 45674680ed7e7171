"""transformers' LlavaForConditionalGeneration at the runtime's shapes (same GPU), eager and with a static
cache, both without transformers' automatic torch.compile: the comparison `--compare-hf` (after the runtime's
own measurement, in the same run) and `--hf-only` (alone, reusing nothing of the runtime but its config and
tokenizer) print."""

from __future__ import annotations

import statistics
import time

from .measure import sync


def compare_hf(cfg, tokenizer, dtype, device: str, new_tokens: int, repeats: int = 3) -> dict:
    """Time transformers' generate on random weights at `cfg`'s shapes: `hf_{eager,static}_ttft_ms` and
    `hf_{eager,static}_ms_per_token` (medians of `repeats` runs), or `hf_{label}_error` naming what failed.

    transformers 5 compiles the forward by itself when the cache is compileable (a static cache on a GPU):
    for a 7B model that takes minutes and measures the compiler, not the model, so both runs pass
    `disable_compile=True`, and `hf_dynamo_graphs` (graphs torch._dynamo compiled during the comparison)
    shows that nothing was compiled.
    """
    import torch
    import transformers as T

    from ..checkpoint.layouts import hf_llama_config, hf_vision_config

    text = {k: v for k, v in hf_llama_config(cfg.llm).items() if k not in ("architectures", "torch_dtype")}
    vis = {k: v for k, v in hf_vision_config(cfg.vision).items() if k not in ("image_mean", "image_std")}
    n_img = cfg.vision.num_patches
    hf_cfg = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**vis),
        text_config=T.LlamaConfig(**text),
        image_token_index=cfg.llm.vocab_size - 1,
        vision_feature_layer=cfg.vision.select_layer,
        vision_feature_select_strategy="default",
        image_seq_length=n_img,
    )
    dtype = dtype or torch.float32
    out: dict = {"hf_transformers_version": T.__version__}
    if not hasattr(T.GenerationConfig(), "disable_compile"):
        out["hf_error"] = f"transformers {T.__version__} has no disable_compile: a static-cache run would compile"
        return out
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:  # built on the device in its dtype: a 7B model initialised on the host would take minutes
        with torch.device(device):
            model = T.LlavaForConditionalGeneration(hf_cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    prompt = (
        tokenizer.encode_text("USER: ")
        + [cfg.llm.vocab_size - 1] * n_img
        + tokenizer.encode_text("\nDescribe the region. ASSISTANT:")
    )
    ids = torch.tensor([[cfg.llm.bos_token_id, *prompt]], device=device)
    pixels = torch.randn(1, 3, cfg.vision.image_size, cfg.vision.image_size, device=device, dtype=dtype)
    graphs0 = _dynamo_graphs()
    for label, kw in (("eager", {}), ("static", {"cache_implementation": "static"})):

        def run(n, kw=kw):
            sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    pixel_values=pixels,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    pad_token_id=0,
                    disable_compile=True,
                    **kw,
                )
            sync(device)
            return (time.perf_counter() - t0) * 1e3

        try:
            run(new_tokens)  # warm-up at both lengths: a static cache is sized by the longest generate so far
            run(1)
            ttft = statistics.median(run(1) for _ in range(repeats))
            total = statistics.median(run(new_tokens) for _ in range(repeats))
            out[f"hf_{label}_ttft_ms"] = ttft
            out[f"hf_{label}_ms_per_token"] = (total - ttft) / max(new_tokens - 1, 1)
        except Exception as exc:  # report, don't hide: the comparison row says what failed
            out[f"hf_{label}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    graphs1 = _dynamo_graphs()
    if graphs0 is not None and graphs1 is not None:
        out["hf_dynamo_graphs"] = graphs1 - graphs0
    return out


def _dynamo_graphs() -> int | None:
    """Graphs torch._dynamo has compiled in this process so far (None where torch does not count them)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["stats"]["unique_graphs"])
