// Fused multi-scale attention for training on CPU: the row-wise part of the three branches (S2-S4).
//
// The caller (r1kit/model/kernels/multiscale.py) does the matrix products with torch.bmm:
//   forward   scores = q k^T / sqrt(D);  [here] probs = sum_b g_b softmax_b(scores);  out = probs v
//   backward  dP = dO v^T;  dV = probs^T dO;  [here] dS, dgate;  dQ = dS k / sqrt(D);  dK = dS^T q / sqrt(D)
// This file does, for each query row, what torch needs a dozen passes over [N, T, T] for: the
// three masks (local window, top-k of the causal keys, symbol keys), three masked softmaxes and
// their gate-weighted sum; in the backward pass the three softmax gradients and the gates'.
//
// Training layout only: the keys are the queries, at positions 0..T-1 in every row, so query t
// sees keys 0..t (causal), t-window+1..t (local), and the symbol keys among 0..t. Work per row is
// proportional to t, not T. Rows are independent: they run in parallel, and the result does not
// depend on the thread count.
//
// Shapes: N = batch x heads, T queries = keys; gates [N, T, 3] in the order local, global, symbolic.
// A branch with no allowed key for a query contributes exactly zero (as SDPA does for an empty row).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int kLocal = 0, kGlobal = 1, kSymbol = 2, kBranches = 3;

// body(j, n) on [lo, hi) in steps of one vector; n < Vec::size() only for the last, partial one.
template <typename F>
inline void for_each_vec(int64_t lo, int64_t hi, F&& body) {
  int64_t j = lo;
  for (; j + Vec::size() <= hi; j += Vec::size()) body(j, Vec::size());
  if (j < hi) body(j, hi - j);
}

// acc + x on the first n lanes (all of them for a full vector)
inline Vec add_lanes(const Vec& acc, const Vec& x, int64_t n) {
  return n == Vec::size() ? acc + x : Vec::set(acc, acc + x, n);
}

inline float reduce_sum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v);
}

inline float reduce_max(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, v);
}

// e^min(x, 0) times `allowed` (0 or 1). exp_u20 is ATen's fast exp, the one torch's own CPU flash
// attention uses; min(x, 0) keeps a disallowed key's score from overflowing before it is zeroed.
inline Vec masked_exp(const Vec& x, const Vec& allowed) {
  return allowed * at::vec::minimum(x, Vec(0.0f)).exp_u20();
}

// The softmax over keys [lo, hi) of s where `allowed` (nullptr = all allowed), added to probs with
// weight `gate`. Returns {row max, 1 / row sum}, {0, 0} for a branch with no allowed key.
std::pair<float, float> add_softmax(const float* s, const float* allowed, int64_t lo, int64_t hi, float gate,
                                    float* probs, float* weights) {
  const Vec kOne(1.0f);
  Vec vmax(-std::numeric_limits<float>::infinity()), vcount(0.0f);
  for_each_vec(lo, hi, [&](int64_t j, int64_t n) {
    const Vec a = allowed ? Vec::loadu(allowed + j, n) : kOne;
    // a disallowed key's score is pushed down by 1e30, far below any allowed one
    const Vec v = Vec::loadu(s + j, n) + (a - kOne) * Vec(1e30f);
    vmax = n == Vec::size() ? at::vec::maximum(vmax, v) : Vec::set(vmax, at::vec::maximum(vmax, v), n);
    vcount = add_lanes(vcount, a, n);
  });
  if (hi <= lo || reduce_sum(vcount) < 0.5f) return {0.0f, 0.0f};
  const float row_max = reduce_max(vmax);
  Vec vsum(0.0f);
  for_each_vec(lo, hi, [&](int64_t j, int64_t n) {
    const Vec a = allowed ? Vec::loadu(allowed + j, n) : kOne;
    const Vec w = masked_exp(Vec::loadu(s + j, n) - Vec(row_max), a);
    w.store(weights + j, n);
    vsum = add_lanes(vsum, w, n);
  });
  const float inv_total = 1.0f / reduce_sum(vsum);
  const Vec scale(gate * inv_total);
  for_each_vec(lo, hi, [&](int64_t j, int64_t n) {
    (Vec::loadu(probs + j, n) + scale * Vec::loadu(weights + j, n)).store(probs + j, n);
  });
  return {row_max, inv_total};
}

// Marks in `keep` (0/1) exactly k of keys [0, n): those with the k largest scores, ties broken by
// key order. Bisection on the value with vectorised counts (~12 passes over a row of ~100 keys,
// several times faster than std::nth_element); nth_element only where tied scores stop it.
void select_topk(const float* s, int64_t n, int64_t k, float* keep, float* scratch) {
  Vec vmax(-std::numeric_limits<float>::infinity()), vmin(std::numeric_limits<float>::infinity());
  for_each_vec(0, n, [&](int64_t j, int64_t m) {
    const Vec v = Vec::loadu(s + j, m);
    vmax = m == Vec::size() ? at::vec::maximum(vmax, v) : Vec::set(vmax, at::vec::maximum(vmax, v), m);
    vmin = m == Vec::size() ? at::vec::minimum(vmin, v) : Vec::set(vmin, at::vec::minimum(vmin, v), m);
  });
  // invariant: count(s >= lo) > k > count(s >= hi), until a midpoint keeps exactly k
  float lo = at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return at::vec::minimum(x, y); }, vmin);
  float hi = std::nextafter(reduce_max(vmax), std::numeric_limits<float>::infinity());
  for (int iter = 0; iter < 64; ++iter) {
    const float mid = lo + (hi - lo) * 0.5f;
    if (!(mid > lo && mid < hi)) break;  // the interval cannot shrink: tied scores
    const Vec vmid(mid);
    Vec vcount(0.0f);
    for_each_vec(0, n, [&](int64_t j, int64_t m) { vcount = add_lanes(vcount, Vec::loadu(s + j, m).ge(vmid), m); });
    const int64_t count = static_cast<int64_t>(reduce_sum(vcount) + 0.5f);
    if (count == k) {
      for_each_vec(0, n, [&](int64_t j, int64_t m) { Vec::loadu(s + j, m).ge(vmid).store(keep + j, m); });
      return;
    }
    (count > k ? lo : hi) = mid;
  }
  std::copy(s, s + n, scratch);
  std::nth_element(scratch, scratch + k - 1, scratch + n, std::greater<float>());
  const float kth = scratch[k - 1];
  int64_t ties_left = k;
  for (int64_t j = 0; j < n; ++j) ties_left -= s[j] > kth;
  for (int64_t j = 0; j < n; ++j) keep[j] = s[j] > kth || (s[j] == kth && ties_left-- > 0);
}

// Forward pass of query row t (t + 1 causal keys). s, probs and global_mask hold the row's T
// entries; stats its 3 x {max, 1 / sum}. buf holds 3 * T floats of scratch.
void forward_row(const float* s, const float* symbol, int64_t t, int64_t T, const float* gate, int64_t window,
                 int64_t topk, float* probs, uint8_t* global_mask, float* stats, float* buf) {
  const int64_t n_causal = t + 1;
  float* keep = buf;
  float* weights = buf + T;
  float* scratch = buf + 2 * T;
  std::fill(probs, probs + T, 0.0f);

  auto [local_max, local_inv] = add_softmax(s, nullptr, std::max<int64_t>(0, n_causal - window), n_causal, gate[kLocal], probs, weights);
  const float* global_keep = nullptr;  // all causal keys while there are at most k of them
  if (n_causal > topk) {
    select_topk(s, n_causal, topk, keep, scratch);
    for (int64_t j = 0; j < n_causal; ++j) global_mask[j] = keep[j] != 0.0f;
    global_keep = keep;
  }
  auto [global_max, global_inv] = add_softmax(s, global_keep, 0, n_causal, gate[kGlobal], probs, weights);
  auto [symbol_max, symbol_inv] = add_softmax(s, symbol, 0, n_causal, gate[kSymbol], probs, weights);
  const float row_stats[2 * kBranches] = {local_max, local_inv, global_max, global_inv, symbol_max, symbol_inv};
  std::copy(row_stats, row_stats + 2 * kBranches, stats);
}

// One branch's part of the backward pass over keys [lo, hi): d_scores += g p (dP - dP.p); returns
// dP.p, the gradient of its gate.
float softmax_backward(const float* d_probs, const float* s, const float* allowed, int64_t lo, int64_t hi, float row_max,
                       float inv_total, float gate, float* d_scores, float* p) {
  if (inv_total == 0.0f) return 0.0f;  // the branch had no allowed key
  const Vec kOne(1.0f);
  Vec vdot(0.0f);
  for_each_vec(lo, hi, [&](int64_t j, int64_t n) {
    const Vec a = allowed ? Vec::loadu(allowed + j, n) : kOne;
    const Vec pj = masked_exp(Vec::loadu(s + j, n) - Vec(row_max), a) * Vec(inv_total);
    pj.store(p + j, n);
    vdot = add_lanes(vdot, Vec::loadu(d_probs + j, n) * pj, n);
  });
  const float dot = reduce_sum(vdot);
  const Vec g(gate), vdot_all(dot);
  for_each_vec(lo, hi, [&](int64_t j, int64_t n) {
    const Vec ds = Vec::loadu(d_scores + j, n) + g * Vec::loadu(p + j, n) * (Vec::loadu(d_probs + j, n) - vdot_all);
    ds.store(d_scores + j, n);
  });
  return dot;
}

// Backward pass of query row t. buf holds 2 * T floats of scratch.
void backward_row(const float* d_probs, const float* s, const float* symbol, const uint8_t* global_mask, const float* stats,
                  const float* gate, int64_t t, int64_t T, int64_t window, int64_t topk, float* d_scores, float* d_gate,
                  float* buf) {
  const int64_t n_causal = t + 1;
  float* keep = buf;
  float* p = buf + T;
  std::fill(d_scores, d_scores + T, 0.0f);
  d_gate[kLocal] = softmax_backward(d_probs, s, nullptr, std::max<int64_t>(0, n_causal - window), n_causal, stats[0],
                                    stats[1], gate[kLocal], d_scores, p);
  const float* global_keep = nullptr;
  if (n_causal > topk) {
    for (int64_t j = 0; j < n_causal; ++j) keep[j] = global_mask[j];
    global_keep = keep;
  }
  d_gate[kGlobal] = softmax_backward(d_probs, s, global_keep, 0, n_causal, stats[2], stats[3], gate[kGlobal], d_scores, p);
  d_gate[kSymbol] = softmax_backward(d_probs, s, symbol, 0, n_causal, stats[4], stats[5], gate[kSymbol], d_scores, p);
}

// body(row, n, t, scratch) for every one of the N x T query rows, in parallel; each thread gets its own
// `scratch_floats` of scratch.
template <typename F>
void parallel_rows(int64_t N, int64_t T, int64_t scratch_floats, F&& body) {
  at::parallel_for(0, N * T, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(scratch_floats);
    for (int64_t row = begin; row < end; ++row) body(row, row / T, row % T, scratch.data());
  });
}

void check_float(const torch::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.dim() == dim,
              name, " must be a contiguous float32 CPU tensor with ", dim, " dimensions");
}

// scores [N, T, T], k_symbol [B, T] (bool), gate [N, T, 3]; N = B * n_heads.
// Returns probs [N, T, T] (the gate-weighted mix), global_mask [N, T, T] (uint8: key kept by the
// top-k; written only in rows with more than topk causal keys) and stats [N, T, 3, 2].
std::vector<torch::Tensor> forward(torch::Tensor scores, torch::Tensor k_symbol, torch::Tensor gate, int64_t n_heads,
                                   int64_t window, int64_t topk) {
  check_float(scores, "scores", 3);
  check_float(gate, "gate", 3);
  const int64_t N = scores.size(0), T = scores.size(1);
  TORCH_CHECK(scores.size(2) == T, "scores must be [N, T, T]: the keys are the queries");
  TORCH_CHECK(n_heads > 0 && N % n_heads == 0, "scores' first dimension must be batch x heads");
  const int64_t B = N / n_heads;
  TORCH_CHECK(k_symbol.scalar_type() == torch::kBool && k_symbol.sizes() == torch::IntArrayRef({B, T}), "k_symbol must be bool [B, T]");
  TORCH_CHECK(gate.size(0) == N && gate.size(1) == T && gate.size(2) == kBranches, "gate must be [N, T, 3]");
  TORCH_CHECK(window >= 1 && topk >= 1, "window and topk must be >= 1");

  auto probs = torch::empty_like(scores);
  auto global_mask = torch::empty({N, T, T}, scores.options().dtype(torch::kUInt8));
  auto stats = torch::empty({N, T, kBranches, 2}, scores.options());
  const auto symbol_f = k_symbol.to(torch::kFloat32).contiguous();  // 0/1 floats: the masked loops vectorise
  const float* s_ptr = scores.data_ptr<float>();
  const float* sym_ptr = symbol_f.data_ptr<float>();
  const float* g_ptr = gate.data_ptr<float>();
  float* p_ptr = probs.data_ptr<float>();
  uint8_t* m_ptr = global_mask.data_ptr<uint8_t>();
  float* st_ptr = stats.data_ptr<float>();
  parallel_rows(N, T, 3 * T, [&](int64_t row, int64_t n, int64_t t, float* buf) {
    forward_row(s_ptr + row * T, sym_ptr + (n / n_heads) * T, t, T, g_ptr + row * kBranches, window, topk,
                p_ptr + row * T, m_ptr + row * T, st_ptr + row * 2 * kBranches, buf);
  });
  return {probs, global_mask, stats};
}

// d_probs [N, T, T] and the rest as forward's inputs and outputs. Returns d_scores [N, T, T]
// (w.r.t. the scaled scores) and d_gate [N, T, 3].
std::vector<torch::Tensor> backward(torch::Tensor d_probs, torch::Tensor scores, torch::Tensor k_symbol,
                                    torch::Tensor global_mask, torch::Tensor stats, torch::Tensor gate, int64_t n_heads,
                                    int64_t window, int64_t topk) {
  check_float(d_probs, "d_probs", 3);
  check_float(scores, "scores", 3);
  check_float(gate, "gate", 3);
  TORCH_CHECK(d_probs.sizes() == scores.sizes() && global_mask.sizes() == scores.sizes() && global_mask.is_contiguous(),
              "d_probs, scores and global_mask must have one shape");
  const int64_t N = scores.size(0), T = scores.size(1);
  auto d_scores = torch::empty_like(scores);
  auto d_gate = torch::empty_like(gate);
  const auto symbol_f = k_symbol.to(torch::kFloat32).contiguous();
  const float* dp_ptr = d_probs.data_ptr<float>();
  const float* s_ptr = scores.data_ptr<float>();
  const float* sym_ptr = symbol_f.data_ptr<float>();
  const uint8_t* m_ptr = global_mask.data_ptr<uint8_t>();
  const float* st_ptr = stats.data_ptr<float>();
  const float* g_ptr = gate.data_ptr<float>();
  float* ds_ptr = d_scores.data_ptr<float>();
  float* dg_ptr = d_gate.data_ptr<float>();
  parallel_rows(N, T, 2 * T, [&](int64_t row, int64_t n, int64_t t, float* buf) {
    backward_row(dp_ptr + row * T, s_ptr + row * T, sym_ptr + (n / n_heads) * T, m_ptr + row * T,
                 st_ptr + row * 2 * kBranches, g_ptr + row * kBranches, t, T, window, topk, ds_ptr + row * T,
                 dg_ptr + row * kBranches, buf);
  });
  return {d_scores, d_gate};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused multi-scale attention, training layout: masks, three softmaxes and their gated mix");
  m.def("backward", &backward, "fused multi-scale attention, training layout: gradients of the scores and the gates");
}
