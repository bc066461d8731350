"""Muon + AdamW optimizer (r1kit.train.optim): the orthogonalisation, AdamW's half against torch's."""

from __future__ import annotations

import pytest
import torch

from r1kit.config import preset
from r1kit.model.transformer import Transformer
from r1kit.train.optim import MuonAdamW, muon_adamw, muon_param_names, orthogonalize


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
