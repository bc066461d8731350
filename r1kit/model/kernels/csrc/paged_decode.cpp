// Decode attention that reads a paged KV cache in place (r1kit/inference/paged_cache.py): one new
// query per row, its keys and values found through the row's block table, so nothing is gathered.
//
// For each row b and head h (in parallel; the result does not depend on the thread count):
//   scores_s = q . k_s / sqrt(D) over the row's visible keys s = 0 .. length_b - 1
//   dense        out = softmax(scores) v
//   multi-scale  out = g_local  softmax over the last `window` keys
//                    + g_global softmax over the `topk` highest-scoring keys (all when there are fewer)
//                    + g_symbol softmax over the keys whose token is a maths symbol (zero when none)
// which is r1kit.model.attention.multiscale_chunk for a query at position length_b - 1.
//
// Shapes: q [B, H, D]; kv [N, K, 2, G, D] (this layer's storage: N blocks of K tokens, keys then
// values, G key/value heads; head h reads kv head h / (H / G)); table [B, M] storage block ids;
// length [B]; symbol [N, K]; gate [B, H, 3] (local, global, symbolic) or empty for dense.
// float32 only; the caller falls back to gathering otherwise.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;

inline float dot(const float* a, const float* b, int64_t n) {
  Vec acc(0.f);
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) acc = at::vec::fmadd(Vec::loadu(a + i), Vec::loadu(b + i), acc);
  float lanes[Vec::size()];
  acc.store(lanes);
  float s = 0.f;
  for (int64_t l = 0; l < Vec::size(); ++l) s += lanes[l];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out += w * v
inline void axpy(float w, const float* v, float* out, int64_t n) {
  const Vec wv(w);
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) at::vec::fmadd(wv, Vec::loadu(v + i), Vec::loadu(out + i)).store(out + i);
  for (; i < n; ++i) out[i] += w * v[i];
}

// out += weight * softmax(scores[idx]) v[idx], over the keys listed in idx (nothing when empty)
template <typename ValueAt>
void softmax_into(const std::vector<float>& scores, const std::vector<int64_t>& idx, ValueAt value_at,
                  float weight, float* out, int64_t D, std::vector<float>& p) {
  if (idx.empty() || weight == 0.f) return;
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t s : idx) top = std::max(top, scores[s]);
  float total = 0.f;
  p.resize(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) total += (p[i] = std::exp(scores[idx[i]] - top));
  const float norm = weight / total;
  for (size_t i = 0; i < idx.size(); ++i) axpy(p[i] * norm, value_at(idx[i]), out, D);
}

}  // namespace

torch::Tensor paged_decode(torch::Tensor q, torch::Tensor kv, torch::Tensor table, torch::Tensor length,
                           torch::Tensor symbol, torch::Tensor gate, int64_t window, int64_t topk) {
  TORCH_CHECK(q.dtype() == torch::kFloat32 && kv.dtype() == torch::kFloat32, "paged_decode: float32 only");
  TORCH_CHECK(q.dim() == 3 && kv.dim() == 5 && table.dim() == 2, "paged_decode: q [B, H, D], kv [N, K, 2, G, D], table [B, M]");
  q = q.contiguous();
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t K = kv.size(1), G = kv.size(3), M = table.size(1);
  TORCH_CHECK(kv.size(2) == 2 && kv.size(4) == D && H % G == 0, "paged_decode: kv shape does not match q");
  TORCH_CHECK(kv.is_contiguous() && table.is_contiguous() && symbol.is_contiguous(), "paged_decode: contiguous storage expected");
  const bool multiscale = gate.numel() > 0;
  if (multiscale) {
    gate = gate.contiguous();
    TORCH_CHECK(gate.size(0) == B && gate.size(1) == H && gate.size(2) == 3, "paged_decode: gate [B, H, 3]");
  }
  auto out = torch::zeros({B, H, D}, q.options());
  const float* q_ = q.data_ptr<float>();
  const float* kv_ = kv.data_ptr<float>();
  const int64_t* table_ = table.data_ptr<int64_t>();
  const int64_t* length_ = length.data_ptr<int64_t>();
  const bool* symbol_ = symbol.data_ptr<bool>();
  const float* gate_ = multiscale ? gate.data_ptr<float>() : nullptr;
  float* out_ = out.data_ptr<float>();
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const int64_t rep = H / G;

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, p;
    std::vector<int64_t> all, local, global, symbolic;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H, g = h / rep;
      const int64_t S = length_[b];
      TORCH_CHECK(S >= 1 && S <= M * K, "paged_decode: row length outside its block table");
      auto slot = [&](int64_t s) { return table_[b * M + s / K] * K + s % K; };  // storage token index
      auto key_at = [&](int64_t s) { return kv_ + (slot(s) * 2 + 0) * G * D + g * D; };
      auto value_at = [&](int64_t s) { return kv_ + (slot(s) * 2 + 1) * G * D + g * D; };
      const float* qv = q_ + bh * D;
      scores.resize(S);
      for (int64_t s = 0; s < S; ++s) scores[s] = dot(qv, key_at(s), D) * scale;
      float* o = out_ + bh * D;
      if (!multiscale) {
        all.resize(S);
        for (int64_t s = 0; s < S; ++s) all[s] = s;
        softmax_into(scores, all, value_at, 1.f, o, D, p);
        continue;
      }
      const float* gw = gate_ + bh * 3;
      local.clear();
      for (int64_t s = std::max<int64_t>(0, S - window); s < S; ++s) local.push_back(s);
      global.resize(S);
      for (int64_t s = 0; s < S; ++s) global[s] = s;
      if (S > topk) {  // the topk highest scores (exactly topk; ties broken by nth_element, as torch.topk may)
        std::nth_element(global.begin(), global.begin() + topk, global.end(),
                         [&](int64_t a, int64_t c) { return scores[a] > scores[c]; });
        global.resize(topk);
      }
      symbolic.clear();
      for (int64_t s = 0; s < S; ++s)
        if (symbol_[slot(s)]) symbolic.push_back(s);
      softmax_into(scores, local, value_at, gw[0], o, D, p);
      softmax_into(scores, global, value_at, gw[1], o, D, p);
      softmax_into(scores, symbolic, value_at, gw[2], o, D, p);
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode", &paged_decode, "decode attention (dense or multi-scale) over a paged KV cache, read in place");
}
