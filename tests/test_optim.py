"""Muon + AdamW optimizer (r1kit.train.optim): the orthogonalisation, AdamW's half against torch's."""

from __future__ import annotations

import pytest
import torch

from r1kit.config import preset
from r1kit.model.transformer import Transformer
import r1kit.device as device
from r1kit.train.optim import MuonAdamW, muon_adamw, muon_param_names, ns_dtype, orthogonalize


def test_orthogonalize_flattens_singular_values_per_matrix():
    torch.manual_seed(0)
    # ill-conditioned on purpose: singular values spread over two orders of magnitude (5 steps lift
    # a relative 1e-2 to ~1; a slope of 3.4 a step cannot lift 1e-4 that far)
    g = torch.randn(3, 96, 40) @ torch.diag(torch.logspace(-1, 1, 40)) @ torch.linalg.qr(torch.randn(40, 40))[0]
    for x in (g, g.mT):  # tall and wide
        o = orthogonalize(x)
        assert o.shape == x.shape
        s = torch.linalg.svdvals(o)
        assert s.min() > 0.5 and s.max() < 1.3, (s.min(), s.max())  # the quintic lands in ~[0.7, 1.2]
        # batched = one matrix at a time, and the singular vectors are G's (U V^T up to scale)
        assert torch.allclose(o[1], orthogonalize(x[1]), atol=1e-5)
        u, _, vh = torch.linalg.svd(x[0], full_matrices=False)
        assert torch.nn.functional.cosine_similarity(o[0].flatten(), (u @ vh).flatten(), dim=0) > 0.97


def test_orthogonalize_in_bf16_matches_fp32():
    # the reference Muon iterates in bf16; the result must be the fp32 one up to bf16 rounding
    torch.manual_seed(0)
    g = torch.randn(4, 176, 128)
    exact, low = orthogonalize(g), orthogonalize(g, dtype=torch.bfloat16)
    assert low.dtype == torch.float32 and low.shape == g.shape
    s = torch.linalg.svdvals(low)
    assert s.min() > 0.5 and s.max() < 1.3, (s.min(), s.max())
    cos = torch.nn.functional.cosine_similarity(exact.flatten(1), low.flatten(1), dim=1)
    assert cos.min() > 0.999, cos


def test_ns_dtype_follows_the_cpu_unless_asked(monkeypatch):
    assert ns_dtype("fp32", "cpu") == (torch.float32, "asked for")
    assert ns_dtype("bf16", "cpu")[0] == torch.bfloat16
    monkeypatch.setattr(device, "cpu_native_bf16", lambda: (True, "avx512_bf16"))
    assert ns_dtype("auto", "cpu")[0] == torch.bfloat16
    monkeypatch.setattr(device, "cpu_native_bf16", lambda: (False, "no amx_bf16 / avx512_bf16 flag"))
    dtype, reason = ns_dtype("auto", "cpu")
    assert dtype == torch.float32 and "without native bf16" in reason
    with pytest.raises(ValueError, match="fp16"):
        ns_dtype("fp16", "cpu")


def test_muon_step_with_bf16_iterations_tracks_fp32():
    torch.manual_seed(0)
    w32 = torch.randn(2, 48, 32, requires_grad=True)
    w16 = w32.detach().clone().requires_grad_()
    opts = [MuonAdamW([{"params": [w], "use_muon": True}], lr=1e-2, ns_dtype=d) for w, d in ((w32, torch.float32), (w16, torch.bfloat16))]
    start = w32.detach().clone()
    for step in range(3):
        for opt, w in zip(opts, (w32, w16)):
            opt.zero_grad()
            (w.sin() * (step + 1)).sum().backward()
            opt.step()
    assert w16.dtype == torch.float32 and opts[1].state[w16]["momentum_buffer"].dtype == torch.float32
    moved32, moved16 = (w32 - start).detach(), (w16 - start).detach()
    assert torch.nn.functional.cosine_similarity(moved32.flatten(), moved16.flatten(), dim=0) > 0.999


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    a, b = torch.randn(5, 7, requires_grad=True), torch.randn(7, requires_grad=True)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours = MuonAdamW([{"params": [a], "weight_decay": 0.1}, {"params": [b]}], lr=1e-2, betas=(0.9, 0.95))
    ref = torch.optim.AdamW([{"params": [a2], "weight_decay": 0.1}, {"params": [b2], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for step in range(5):
        for opt, (x, y) in ((ours, (a, b)), (ref, (a2, b2))):
            opt.zero_grad()
            ((x.sin() * (step + 1)).sum() + (y ** 2).sum()).backward()
            opt.step()
    assert torch.allclose(a, a2, atol=1e-6) and torch.allclose(b, b2, atol=1e-6)


def test_muon_moves_only_hidden_matrices_by_an_rms_matched_step():
    model = Transformer(preset("tiny"))
    hidden = muon_param_names(model)
    names = dict(model.named_parameters())
    assert "layers.0.attn.qkv_proj.weight" in hidden and "layers.0.ffn.gate_up_proj_E2FC" in hidden
    assert not hidden & {"embed.weight", "lm_head.weight", "layers.0.attn.gate.weight", "layers.0.ffn.expert_embed_EC"}
    w = names["layers.0.attn.o_proj.weight"]
    before = w.detach().clone()
    opt = MuonAdamW([{"params": [w], "use_muon": True}], lr=1e-3)
    w.grad = torch.randn_like(w) * 1e3  # the step's size must not depend on the gradient's scale
    opt.step()
    delta = w.detach() - before
    # Moonshot's scale gives the update an RMS of about 0.2 * lr (AdamW's typical update RMS)
    assert 0.1e-3 < delta.pow(2).mean().sqrt() < 0.3e-3


def test_muon_lr_scales_the_muon_group_only():
    model = Transformer(preset("tiny"))
    opt = muon_adamw(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), muon_lr=5e-3)
    scales = {g["use_muon"]: g["lr_scale"] for g in opt.param_groups}
    assert scales == {True: pytest.approx(5.0), False: 1.0}
    assert [g["lr"] for g in opt.param_groups if g["use_muon"]] == [pytest.approx(5e-3)]
