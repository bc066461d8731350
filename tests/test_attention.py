"""Multi-scale attention branches against dense references; masking edge cases; chunking."""

import pytest
import torch
import torch.nn.functional as F

from r1kit.model.attention import AttentionContext, multiscale_attention, plan_chunks, rope_tables


def _context(B, T, chunk_size, window, k_symbol_BS=None) -> AttentionContext:
    pos = torch.arange(T).expand(B, T)
    cos, sin = rope_tables(8, T, 10000.0)
    return AttentionContext(
        cos_BTD=cos[pos], sin_BTD=sin[pos], q_pos_BT=pos, k_pos_BS=pos,
        k_symbol_BS=torch.zeros(B, T, dtype=torch.bool) if k_symbol_BS is None else k_symbol_BS,
        standard_causal=True, all_visible=False, chunks=plan_chunks(None, T, chunk_size, window),
    )


def _qkv(B=2, H=3, T=40, D=8):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(B, H, T, D, generator=g) for _ in range(3)]


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_wide_local_and_global_equal_dense_causal(chunk_size):
    q, k, v = _qkv()
    T = q.shape[2]
    dense = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    local, global_, _ = multiscale_attention(q, k, v, _context(2, T, chunk_size, window=T), window=T, topk=T)
    torch.testing.assert_close(local, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(global_, dense, atol=1e-5, rtol=0)


def test_symbolic_with_every_key_a_symbol_equals_dense_causal():
    q, k, v = _qkv()
    B, T = 2, q.shape[2]
    ctx = _context(B, T, 16, window=4, k_symbol_BS=torch.ones(B, T, dtype=torch.bool))
    _, _, symbolic = multiscale_attention(q, k, v, ctx, window=4, topk=4)
    torch.testing.assert_close(symbolic, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5, rtol=0)


def test_narrow_branches_match_explicit_masks():
    """window 5 and top-3 against a dense softmax over exactly the keys each should see."""
    q, k, v = _qkv(B=1, H=2, T=30)
    T, W, K = 30, 5, 3
    symbols = torch.rand(1, T) < 0.3
    local, global_, symbolic = multiscale_attention(q, k, v, _context(1, T, 16, W, symbols), window=W, topk=K)
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    causal = j <= i
    ref_local = torch.softmax(scores.masked_fill(~(causal & (i - j < W)), float("-inf")), -1) @ v
    torch.testing.assert_close(local, ref_local, atol=1e-5, rtol=0)
    masked = scores.masked_fill(~causal, float("-inf"))
    kth = masked.topk(K, dim=-1).values[..., -1:]
    ref_global = torch.softmax(masked.masked_fill(masked < kth, float("-inf")), -1) @ v
    torch.testing.assert_close(global_, ref_global, atol=1e-5, rtol=0)
    sym_ok = causal & symbols[0][None, :]
    ref_sym = torch.softmax(scores.masked_fill(~sym_ok, float("-inf")), -1) @ v
    has_key = sym_ok.any(-1)
    torch.testing.assert_close(symbolic[..., has_key, :], ref_sym[..., has_key, :], atol=1e-5, rtol=0)


def test_query_without_symbol_key_gets_exact_zero_and_finite_grads():
    q, k, v = (t.requires_grad_() for t in _qkv(B=1, H=2, T=20))
    symbols = torch.zeros(1, 20, dtype=torch.bool)
    symbols[0, 12] = True  # queries 0..11 have no symbol before them
    _, _, symbolic = multiscale_attention(q, k, v, _context(1, 20, 8, 4, symbols), window=4, topk=4)
    assert torch.equal(symbolic[:, :, :12], torch.zeros_like(symbolic[:, :, :12]))
    assert symbolic[:, :, 12:].abs().sum() > 0
    symbolic.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_chunked_equals_unchunked_with_gradients():
    base = [t.requires_grad_() for t in _qkv(T=50)]
    results = []
    for chunk_size in (16, 64):
        q, k, v = (t.detach().clone().requires_grad_() for t in base)
        symbols = torch.arange(50).expand(2, 50) % 3 == 0
        out = multiscale_attention(q, k, v, _context(2, 50, chunk_size, 6, symbols), window=6, topk=5)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), q.grad, k.grad, v.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
