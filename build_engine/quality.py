"""int8 quality against fp32, both as ONNX decoders run by ONNX Runtime: cosine similarity of the first-step
logits, and greedy-token agreement over 32 tokens (teacher-forced on the fp32 tokens, and the length of the
common prefix when each runs free)."""

from __future__ import annotations

import numpy as np


class OrtDecoder:
    def __init__(self, path, num_layers: int, kv_heads: int, head_dim: int, dtype=np.float32):
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.layers, self.kv_heads, self.head_dim, self.dtype = num_layers, kv_heads, head_dim, dtype

    def run(self, ids: list[int], table: np.ndarray, start: int, past: list | None):
        feeds = {
            "input_ids": np.array([ids], np.int64),
            "mm_table": table[None].astype(self.dtype),
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
        }
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), self.dtype)
        for i in range(self.layers):
            feeds[f"past_key_{i}"] = past[2 * i] if past else empty
            feeds[f"past_value_{i}"] = past[2 * i + 1] if past else empty
        out = self.sess.run(None, feeds)
        return out[0][0].astype(np.float32), out[1:]

    def greedy(self, ids, table, n: int, forced: list[int] | None = None):
        """n tokens; with `forced`, feed those tokens instead of the model's own. Returns (picks, first logits)."""
        logits, past = self.run(ids, table, 0, None)
        first = logits
        picks, pos = [], len(ids)
        dummy = np.zeros((1, table.shape[1]), table.dtype)
        for step in range(n):
            picks.append(int(np.argmax(logits)))
            if step + 1 == n:
                break
            nxt = forced[step] if forced is not None else picks[-1]
            logits, past = self.run([nxt], dummy, pos, past)
            pos += 1
        return picks, first


def compare(ref: OrtDecoder, test: OrtDecoder, prompts, tokens: int = 32) -> dict:
    cos, agree, prefix = [], [], []
    for ids, table in prompts:
        ref_tokens, ref_first = ref.greedy(ids, table, tokens)
        forced, test_first = test.greedy(ids, table, tokens, forced=ref_tokens)
        free, _ = test.greedy(ids, table, tokens)
        cos.append(float(ref_first @ test_first / (np.linalg.norm(ref_first) * np.linalg.norm(test_first))))
        agree.append(float(np.mean(np.array(forced) == np.array(ref_tokens))))
        same = 0
        for a, b in zip(free, ref_tokens):
            if a != b:
                break
            same += 1
        prefix.append(same)
    return {
        "prompts": len(prompts),
        "tokens": tokens,
        "first_logits_cosine_min": min(cos),
        "first_logits_cosine_mean": float(np.mean(cos)),
        "greedy_agreement_teacher_forced": float(np.mean(agree)),
        "greedy_common_prefix_mean": float(np.mean(prefix)),
    }
