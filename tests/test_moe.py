"""Mixture of experts: equivalence with the dense layer, batched dispatch, balancing behaviour."""

import pytest
import torch

from r1kit.config import preset
from r1kit.model.moe import MoEFeedForward, SwiGLU, balance_metrics


def _moe(**moe_changes) -> MoEFeedForward:
    cfg = preset("tiny")
    cfg.moe = cfg.moe.model_copy(update=moe_changes)
    layer = MoEFeedForward(cfg)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return layer


@pytest.mark.parametrize("balancing", ["none", "load_penalty", "aux_loss", "bias"])
def test_one_expert_top1_equals_dense_swiglu(balancing):
    moe = _moe(n_experts=1, top_k=1, balancing=balancing)
    dense = SwiGLU(32, moe.gate_up_proj_E2FC.shape[1] // 2)
    with torch.no_grad():
        dense.gate_up_proj.weight.copy_(moe.gate_up_proj_E2FC[0])
        dense.down_proj.weight.copy_(moe.down_proj_ECF[0])
    x = torch.randn(3, 7, 32)
    torch.testing.assert_close(moe(x), dense(x), atol=1e-6, rtol=1e-6)


def test_batched_dispatch_equals_per_token_reference():
    moe = _moe(n_experts=4, top_k=2, n_shared=1).eval()
    x = torch.randn(2, 9, 32)
    out = moe(x)
    x_NC = x.reshape(-1, 32)
    topk, weights, _ = moe.route(x_NC)
    ref = []
    for n in range(x_NC.shape[0]):  # the slow, obvious way: token by token, expert by expert
        y = moe.shared(x_NC[n])
        for e, w in zip(topk[n].tolist(), weights[n]):
            gate_F, up_F = (moe.gate_up_proj_E2FC[e] @ x_NC[n]).chunk(2)
            h = torch.nn.functional.silu(gate_F) * up_F
            y = y + w * (moe.down_proj_ECF[e] @ h)
        ref.append(y)
    torch.testing.assert_close(out, torch.stack(ref).view(2, 9, 32), atol=1e-5, rtol=1e-5)
    assert moe.last_counts_E.sum() == 2 * 9 * 2


def test_capacity_factor_drops_overflow_in_training_only():
    moe = _moe(n_experts=4, top_k=1, capacity_factor=0.5)
    with torch.no_grad():
        moe.expert_embed_EC[0] += 3.0  # nearly every token wants expert 0
    x = torch.randn(1, 40, 32) + 1.0
    moe.eval()
    dropless = moe(x)
    moe.train()
    capped = moe(x)
    # kept tokens equal the dropless output up to fp32 rounding (the expert's matmul sees fewer rows)
    kept = (capped - dropless).abs().sum(-1) <= 1e-5 * dropless.abs().sum(-1)
    dropped = capped.abs().sum(-1) == 0
    assert (kept | dropped).all()
    # capacity = ceil(0.5 * 40 / 4) = 5 tokens per expert at most
    assert kept.sum() <= 4 * 5 and dropped.sum() > 0


def _skewed_router_utilisation(balancing: str, steps: int = 100) -> list[float]:
    """Utilisation per step of a router skewed towards expert 0, with the router frozen, so only
    the balancing mechanism (load EMA or bias) can change where tokens go."""
    torch.manual_seed(0)
    moe = _moe(n_experts=4, top_k=1, balancing=balancing, bias_gamma=0.01)
    with torch.no_grad():
        moe.expert_embed_EC.normal_(std=0.3)
        moe.expert_embed_EC[0] += 0.35
    moe.train()
    utilisation = []
    for _ in range(steps):
        with torch.no_grad():
            moe(torch.randn(8, 32, 32) + 0.5)
        utilisation.append(balance_metrics(moe.last_counts_E)["utilisation"])
        moe.update_balancing()
    return utilisation


@pytest.mark.parametrize("balancing", ["load_penalty", "bias"])
def test_balancing_drives_skewed_router_towards_balance(balancing):
    u = _skewed_router_utilisation(balancing)
    assert u[0] < 0.45
    assert sum(u[-20:]) / 20 > u[0] + 0.15


def test_no_balancing_leaves_skewed_router_skewed():
    u = _skewed_router_utilisation("none")
    assert sum(u[-20:]) / 20 < sum(u[:20]) / 20 + 0.05


def test_aux_loss_gradient_balances_router():
    torch.manual_seed(0)
    moe = _moe(n_experts=4, top_k=1, balancing="aux_loss", aux_loss_coef=1.0)
    with torch.no_grad():
        moe.expert_embed_EC.normal_(std=0.3)
        moe.expert_embed_EC[0] += 0.35
    opt = torch.optim.SGD([moe.expert_embed_EC], lr=0.5)
    moe.train()
    utilisation = []
    for _ in range(60):
        moe(torch.randn(8, 32, 32) + 0.5)
        utilisation.append(balance_metrics(moe.last_counts_E)["utilisation"])
        opt.zero_grad()
        moe.aux_loss.backward()
        opt.step()
    assert utilisation[0] < 0.45 and sum(utilisation[-10:]) / 10 > 0.8


def test_balancing_state_changes_only_in_training():
    moe = _moe(n_experts=4, balancing="bias")
    moe.eval()
    moe(torch.randn(2, 5, 32))
    moe.update_balancing()
    assert torch.equal(moe.load_E, torch.ones(4)) and torch.equal(moe.expert_bias_E, torch.zeros(4))
    moe.train()
    moe(torch.randn(2, 5, 32))
    moe.update_balancing()
    assert not torch.equal(moe.load_E, torch.ones(4)) and not torch.equal(moe.expert_bias_E, torch.zeros(4))


def test_balance_metrics():
    assert balance_metrics(torch.tensor([5.0, 5, 5, 5])) == pytest.approx({"utilisation": 1.0, "max_vio": 0.0})
    m = balance_metrics(torch.tensor([20.0, 0, 0, 0]))
    assert m["utilisation"] == pytest.approx(0.25) and m["max_vio"] == pytest.approx(3.0)


def test_the_dense_decode_dispatch_equals_the_routed_one():
    """Inference forwards of few tokens run every expert on every token (MoEFeedForward._dense_dispatch);
    the chosen experts' weighted sum must equal the routed dispatch's, in every balancing mode."""
    import r1kit.model.moe as moe

    for balancing in ("none", "load_penalty", "aux_loss", "bias"):
        torch.manual_seed(1)
        cfg = preset("tiny").model_copy(update={"moe": preset("tiny").moe.model_copy(update={"balancing": balancing})})
        layer = MoEFeedForward(cfg)
        for p in layer.parameters():
            torch.nn.init.normal_(p, std=0.3)
        x_NC = torch.randn(40, cfg.dim)
        with torch.no_grad():
            topk_NK, weights_NK, _ = layer.route(x_NC)
            assert torch.allclose(layer._dense_dispatch(x_NC, topk_NK, weights_NK), layer._dispatch(x_NC, topk_NK, weights_NK), atol=1e-6)
            assert x_NC.shape[0] * layer.n_experts <= moe.DENSE_DISPATCH_MAX  # the forward below takes the dense path
            dense = layer(x_NC[None])
        routed = layer(x_NC[None])  # grad on: the routed path
        assert torch.allclose(dense, routed, atol=1e-6)
