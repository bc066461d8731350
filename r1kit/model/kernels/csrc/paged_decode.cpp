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

// weights[idx] += weight * softmax(scores[idx]), from e = exp(scores - max over all keys), computed
// once for the three branches; a branch whose keys all lie so far below the top that their e
// underflows is redone against its own max. Nothing when idx is empty: a branch with no key adds zero.
void add_softmax(const std::vector<float>& scores, const std::vector<float>& e, const std::vector<int64_t>& idx,
                 float weight, std::vector<float>& weights) {
  if (idx.empty() || weight == 0.f) return;
  float total = 0.f;
  for (int64_t s : idx) total += e[s];
  if (total > 1e-30f) {
    const float norm = weight / total;
    for (int64_t s : idx) weights[s] += e[s] * norm;
    return;
  }
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t s : idx) top = std::max(top, scores[s]);
  total = 0.f;
  for (int64_t s : idx) total += std::exp(scores[s] - top);
  for (int64_t s : idx) weights[s] += std::exp(scores[s] - top) * (weight / total);
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

  const int64_t token_stride = 2 * G * D;  // from one token's key (or value) to the next token's in a block
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, e, weights;
    std::vector<int64_t> local, global, symbolic;
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H, g = h / rep;
      const int64_t S = length_[b];
      TORCH_CHECK(S >= 1 && S <= M * K, "paged_decode: row length outside its block table");
      const int64_t* row_table = table_ + b * M;
      const float* qv = q_ + bh * D;
      scores.resize(S);
      for (int64_t first = 0; first < S; first += K) {  // block by block: keys of a block are token_stride apart
        const float* key = kv_ + row_table[first / K] * K * token_stride + g * D;
        for (int64_t s = first; s < std::min(S, first + K); ++s, key += token_stride) scores[s] = dot(qv, key, D) * scale;
      }
      const float top = *std::max_element(scores.begin(), scores.end());
      e.resize(S);
      int64_t s0 = 0;
      for (; s0 + Vec::size() <= S; s0 += Vec::size()) (Vec::loadu(&scores[s0]) - Vec(top)).exp().store(&e[s0]);
      for (; s0 < S; ++s0) e[s0] = std::exp(scores[s0] - top);
      weights.assign(S, 0.f);  // each key's weight in the output, summed over the branches
      if (!multiscale) {
        float total = 0.f;
        for (int64_t s = 0; s < S; ++s) total += e[s];
        for (int64_t s = 0; s < S; ++s) weights[s] = e[s] / total;
      } else {
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
        for (int64_t first = 0; first < S; first += K) {
          const bool* flags = symbol_ + row_table[first / K] * K - first;
          for (int64_t s = first; s < std::min(S, first + K); ++s)
            if (flags[s]) symbolic.push_back(s);
        }
        add_softmax(scores, e, local, gw[0], weights);
        add_softmax(scores, e, global, gw[1], weights);
        add_softmax(scores, e, symbolic, gw[2], weights);
      }
      float* o = out_ + bh * D;  // one pass over the values
      for (int64_t first = 0; first < S; first += K) {
        const float* value = kv_ + row_table[first / K] * K * token_stride + G * D + g * D;
        for (int64_t s = first; s < std::min(S, first + K); ++s, value += token_stride)
          if (weights[s] != 0.f) axpy(weights[s], value, o, D);
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode", &paged_decode, "decode attention (dense or multi-scale) over a paged KV cache, read in place");
}
