#include "op_checks.h"

#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace rgpt {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::string shape_str(const View& v) {
  std::string s = "[";
  for (int i = 0; i < v.ndim; ++i) s += (i ? ", " : "") + std::to_string(v.shape[i]);
  return s + "]";
}

constexpr int64_t kMaxDim = int64_t{1} << 31;

void need_dtype(const View& v, const char* name, std::initializer_list<DType> ok) {
  for (DType t : ok)
    if (v.dtype == t) return;
  std::string allowed;
  for (DType t : ok) allowed += std::string(allowed.empty() ? "" : ", ") + dtype_name(t);
  fail(std::string(name) + " has dtype " + dtype_name(v.dtype) + "; expected one of " + allowed);
}

}  // namespace

DType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "float32") return DType::kF32;
  if (name == "f16" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  if (name == "u8" || name == "uint8") return DType::kU8;
  if (name == "i8" || name == "int8") return DType::kI8;
  if (name == "i64" || name == "int64") return DType::kI64;
  fail("unknown dtype '" + name + "' (expected f32, f16, bf16, u8, i8 or i64)");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI8:
      return "i8";
    case DType::kI64:
      return "i64";
    default:
      return "u8";
  }
}

int64_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kU8:
    case DType::kI8:
      return 1;
    case DType::kI64:
      return 8;
    default:
      return 2;
  }
}

void check_view(const View& v, const char* name, int ndim, bool output) {
  if (v.ndim != ndim)
    fail(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
         std::to_string(v.ndim));
  int64_t numel = 1, last = 0;
  for (int i = 0; i < ndim; ++i) {
    if (v.shape[i] < 0 || v.shape[i] >= kMaxDim)
      fail(std::string(name) + " has an invalid shape " + shape_str(v));
    if (v.stride[i] < 0)
      fail(std::string(name) + " has a negative stride in dimension " + std::to_string(i) + "; pass a copy");
    if (v.stride[i] >= kMaxDim * 64) fail(std::string(name) + " has a stride too large");
    numel *= v.shape[i];
    if (v.shape[i] > 0) last += (v.shape[i] - 1) * v.stride[i];
  }
  if (numel == 0) return;
  if (v.data == nullptr) fail(std::string(name) + " has no data pointer");
  if (last >= v.extent)
    fail(std::string(name) + " with shape " + shape_str(v) + " reaches element " + std::to_string(last) +
         " but its buffer holds " + std::to_string(v.extent));
  if (output) {
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (v.shape[i] > 1 && v.stride[i] != expect)
        fail(std::string(name) + " (an output) must be row-major contiguous");
      expect *= v.shape[i];
    }
  }
}

void check_region_pool(const RegionPoolArgs& a) {
  check_view(a.fmap, "feature_map", 3, false);
  check_view(a.masks, "masks", 3, false);
  check_view(a.image, "image output", 2, true);
  check_view(a.regions, "regions output", 2, true);
  need_dtype(a.fmap, "feature_map", {DType::kF32, DType::kF16, DType::kBF16});
  need_dtype(a.masks, "masks", {DType::kF32});
  need_dtype(a.image, "image output", {DType::kF32, DType::kF16, DType::kBF16});
  if (a.regions.dtype != a.image.dtype) fail("image and regions outputs must have the same dtype");
  const int64_t c = a.fmap.shape[0], h = a.fmap.shape[1], w = a.fmap.shape[2], n = a.masks.shape[0];
  if (c < 1 || h < 1 || w < 1) fail("feature_map must be non-empty [C, H, W], got " + shape_str(a.fmap));
  if (a.grid < 1 || a.grid > 4096) fail("image_grid must be in [1, 4096], got " + std::to_string(a.grid));
  if (n > 0 && (a.masks.shape[1] < 1 || a.masks.shape[2] < 1))
    fail("masks must be [N, Hm, Wm] with Hm, Wm >= 1");
  if (n > 4096) fail("at most 4096 regions per call, got " + std::to_string(n));
  const int64_t g = a.grid;
  if (a.image.shape[0] != g * g || a.image.shape[1] != c)
    fail("image output must be [" + std::to_string(g * g) + ", " + std::to_string(c) + "], got " +
         shape_str(a.image));
  if (a.regions.shape[0] != n || a.regions.shape[1] != c)
    fail("regions output must be [" + std::to_string(n) + ", " + std::to_string(c) + "], got " +
         shape_str(a.regions));
  if (!(a.eps >= 0.0f)) fail("eps must be >= 0");
}

void check_int8_linear(const Int8LinearArgs& a) {
  check_view(a.x, "x", 2, false);
  check_view(a.q, "weight", 2, false);
  check_view(a.scale, "scale", 1, false);
  check_view(a.y, "output", 2, true);
  need_dtype(a.x, "x", {DType::kF32, DType::kF16, DType::kBF16});
  need_dtype(a.q, "weight", {DType::kI8});
  need_dtype(a.scale, "scale", {DType::kF32});
  if (a.y.dtype != a.x.dtype) fail("output dtype must equal x's dtype");
  const int64_t m = a.x.shape[0], k = a.x.shape[1], n = a.q.shape[0];
  if (k < 1 || n < 1)
    fail("int8_linear needs K >= 1 and N >= 1, got x " + shape_str(a.x) + ", weight " + shape_str(a.q));
  if (a.q.shape[1] != k)
    fail("weight must be [N, K] with K = " + std::to_string(k) + ", got " + shape_str(a.q));
  if (a.x.stride[1] != 1 && k > 1) fail("x must have unit stride along K");
  if (a.q.stride[1] != 1 || (n > 1 && a.q.stride[0] != k)) fail("weight must be row-major contiguous");
  if (a.scale.shape[0] != n)
    fail("scale must be [N] with N = " + std::to_string(n) + ", got " + shape_str(a.scale));
  if (a.y.shape[0] != m || a.y.shape[1] != n)
    fail("output must be [" + std::to_string(m) + ", " + std::to_string(n) + "], got " + shape_str(a.y));
}

void check_preprocess_frame(const PreprocessFrameArgs& a) {
  check_view(a.frame, "frame", 3, false);
  check_view(a.out, "output", 3, true);
  need_dtype(a.frame, "frame", {DType::kU8});
  need_dtype(a.out, "output", {DType::kF32, DType::kF16});
  if (a.frame.shape[0] < 1 || a.frame.shape[1] < 1 || a.frame.shape[2] != 3)
    fail("frame must be [H, W, 3] with H, W >= 1, got " + shape_str(a.frame));
  if (a.out.shape[0] != 3 || a.out.shape[1] < 1 || a.out.shape[1] != a.out.shape[2])
    fail("output must be [3, S, S], got " + shape_str(a.out));
  for (int c = 0; c < 3; ++c) {
    if (a.fill[c] < 0 || a.fill[c] > 255) fail("fill colour must be 0..255 per channel");
    if (!(a.std[c] > 0.0f)) fail("std must be > 0 per channel");
  }
}

void check_preprocess_masks(const PreprocessMasksArgs& a) {
  check_view(a.masks, "masks", 3, false);
  check_view(a.out, "output", 3, true);
  need_dtype(a.masks, "masks", {DType::kF32});
  need_dtype(a.out, "output", {DType::kF32});
  if (a.masks.shape[0] > 0 && (a.masks.shape[1] < 1 || a.masks.shape[2] < 1))
    fail("masks must be [N, H, W] with H, W >= 1, got " + shape_str(a.masks));
  if (a.out.shape[0] != a.masks.shape[0] || a.out.shape[1] < 1 || a.out.shape[1] != a.out.shape[2])
    fail("output must be [N, S, S] with N = " + std::to_string(a.masks.shape[0]) + ", got " +
         shape_str(a.out));
}

namespace {

constexpr std::initializer_list<DType> kFloats = {DType::kF32, DType::kF16, DType::kBF16};

void need_same_shape(const View& a, const char* an, const View& b, const char* bn) {
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  if (!same)
    fail(std::string(bn) + " must have the shape of " + an + " " + shape_str(a) + ", got " + shape_str(b));
}

// pos [B] of int64, and inside the view's extent.
void check_positions(const View& pos, int64_t batch) {
  check_view(pos, "pos", 1, false);
  need_dtype(pos, "pos", {DType::kI64});
  if (pos.shape[0] != batch)
    fail("pos must be [B] with B = " + std::to_string(batch) + ", got " + shape_str(pos));
}

}  // namespace

void check_rms_norm(const RmsNormArgs& a) {
  check_view(a.x, "x", 2, false);
  check_view(a.weight, "weight", 1, false);
  check_view(a.y, "output", 2, true);
  need_dtype(a.x, "x", kFloats);
  if (a.weight.dtype != a.x.dtype || a.y.dtype != a.x.dtype) fail("weight and output must have x's dtype");
  const int64_t d = a.x.shape[1];
  if (d < 1) fail("rms_norm needs D >= 1, got x " + shape_str(a.x));
  if (a.x.stride[1] != 1 && d > 1) fail("x must have unit stride along D");
  if (a.weight.shape[0] != d)
    fail("weight must be [D] with D = " + std::to_string(d) + ", got " + shape_str(a.weight));
  need_same_shape(a.x, "x", a.y, "output");
  if (a.add) {
    check_view(a.residual, "residual", 2, false);
    if (a.residual.dtype != a.x.dtype) fail("residual must have x's dtype");
    need_same_shape(a.x, "x", a.residual, "residual");
    if (a.residual.stride[1] != 1 && d > 1) fail("residual must have unit stride along D");
  }
  if (a.has_sum) {
    check_view(a.sum, "sum output", 2, true);
    if (a.sum.dtype != a.x.dtype) fail("sum output must have x's dtype");
    need_same_shape(a.x, "x", a.sum, "sum output");
  }
  if (!(a.eps > 0.0f)) fail("eps must be > 0");
}

void check_rope_kv_write(const RopeKvWriteArgs& a) {
  check_view(a.q, "q", 3, false);
  check_view(a.k, "k", 3, false);
  check_view(a.v, "v", 3, false);
  check_view(a.inv_freq, "inv_freq", 1, false);
  check_view(a.q_out, "q output", 3, true);
  check_view(a.k_cache, "k_cache", 4, true);
  check_view(a.v_cache, "v_cache", 4, true);
  need_dtype(a.q, "q", kFloats);
  if (a.k.dtype != a.q.dtype || a.v.dtype != a.q.dtype || a.q_out.dtype != a.q.dtype)
    fail("k, v and the q output must have q's dtype");
  need_dtype(a.inv_freq, "inv_freq", {DType::kF32});
  need_dtype(a.k_cache, "k_cache", kFloats);
  if (a.v_cache.dtype != a.k_cache.dtype) fail("v_cache must have k_cache's dtype");
  const int64_t b = a.q.shape[0], h = a.q.shape[1], d = a.q.shape[2], kv = a.k.shape[1];
  if (d < 2 || d % 2 != 0) fail("head_dim must be even and >= 2, got q " + shape_str(a.q));
  if (h < 1 || kv < 1) fail("q and k need at least one head");
  if (a.k.shape[0] != b || a.k.shape[2] != d)
    fail("k must be [" + std::to_string(b) + ", Hkv, " + std::to_string(d) + "], got " + shape_str(a.k));
  need_same_shape(a.k, "k", a.v, "v");
  need_same_shape(a.q, "q", a.q_out, "q output");
  if (a.inv_freq.shape[0] != d / 2)
    fail("inv_freq must be [D/2] = [" + std::to_string(d / 2) + "], got " + shape_str(a.inv_freq));
  const View& c = a.k_cache;
  if (c.shape[0] < b || c.shape[1] != kv || c.shape[2] < 1 || c.shape[3] != d)
    fail("k_cache must be [Bc >= " + std::to_string(b) + ", " + std::to_string(kv) + ", S, " +
         std::to_string(d) + "], got " + shape_str(c));
  need_same_shape(a.k_cache, "k_cache", a.v_cache, "v_cache");
  check_positions(a.pos, b);
}

void check_decode_attention(const DecodeAttentionArgs& a) {
  check_view(a.q, "q", 3, false);
  check_view(a.k_cache, "k_cache", 4, false);
  check_view(a.v_cache, "v_cache", 4, false);
  check_view(a.out, "output", 3, true);
  need_dtype(a.q, "q", kFloats);
  need_dtype(a.k_cache, "k_cache", kFloats);
  if (a.v_cache.dtype != a.k_cache.dtype) fail("v_cache must have k_cache's dtype");
  if (a.out.dtype != a.q.dtype) fail("output must have q's dtype");
  const int64_t b = a.q.shape[0], h = a.q.shape[1], d = a.q.shape[2];
  const View& c = a.k_cache;
  if (d < 1 || d > kDecodeMaxHeadDim)
    fail("head_dim must be in [1, " + std::to_string(kDecodeMaxHeadDim) + "], got q " + shape_str(a.q));
  if (c.shape[0] < b || c.shape[1] < 1 || c.shape[2] < 1 || c.shape[3] != d)
    fail("k_cache must be [Bc >= " + std::to_string(b) + ", Hkv, S, " + std::to_string(d) + "], got " +
         shape_str(c));
  need_same_shape(a.k_cache, "k_cache", a.v_cache, "v_cache");
  if (h < 1 || h % c.shape[1] != 0)
    fail("query heads (" + std::to_string(h) + ") must be a multiple of kv heads (" +
         std::to_string(c.shape[1]) + ")");
  if (h / c.shape[1] > kDecodeMaxGroup)
    fail("at most " + std::to_string(kDecodeMaxGroup) + " query heads per kv head, got " +
         std::to_string(h / c.shape[1]));
  need_same_shape(a.q, "q", a.out, "output");
  if (!std::isfinite(a.scale)) fail("scale must be finite");
  check_positions(a.pos, b);
  if (a.has_shared) {
    check_view(a.shared, "shared", 1, false);
    need_dtype(a.shared, "shared", {DType::kI64});
    if (a.shared.shape[0] != b)
      fail("shared must be [B] with B = " + std::to_string(b) + ", got " + shape_str(a.shared));
  }
}

}  // namespace rgpt
