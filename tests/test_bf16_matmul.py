"""r1kit.bf16_matmul: bf16 products (rows padded to shared sizes), fp32 everywhere else. The mode's
product equals the plain bf16 product of the same operands, forward and backward; small weights
stay fp32; a model trains under it with fp32 parameters and gradients."""

from pathlib import Path

import torch
import torch.nn.functional as F

from r1kit.bf16_matmul import MIN_ROWS, bf16_matmuls, padded_rows
from r1kit.config import model_config_from
from r1kit.data.schema import read_metrics, write_jsonl
from r1kit.data.synth import synth
from r1kit.device import autocast
from r1kit.model.transformer import Transformer
from r1kit.train.sft import load_run_config, train_sft

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


def test_padded_rows_round_up_to_eight_sizes_an_octave():
    sizes = [padded_rows(m) for m in range(1, 8193)]
    assert all(p >= m for m, p in zip(range(1, 8193), sizes))
    assert all(p <= max(MIN_ROWS, m * 1.125) for m, p in zip(range(1, 8193), sizes))
    assert sizes == sorted(sizes)  # monotone
    assert len(set(p for m, p in zip(range(1, 8193), sizes) if 1024 < m <= 2048)) == 8
    assert padded_rows(128) == 128 and padded_rows(129) == 144 and padded_rows(1) == MIN_ROWS


def _bf16_reference(x, w):
    """The same product with explicit casts: what the mode must compute."""
    return F.linear(x.to(torch.bfloat16), w.to(torch.bfloat16)).float()


def test_the_product_is_the_bf16_product_forward_and_backward():
    torch.manual_seed(0)
    for shape in [(3, 37, 64), (200, 64), (1, 64)]:  # a batch of sequences, odd row counts, one row
        x = torch.randn(*shape, requires_grad=True)
        w = torch.randn(48, 64, requires_grad=True)
        with bf16_matmuls():
            out = F.linear(x, w)
            out_at = x @ w.t()  # the MoE's experts multiply with @
        assert out.dtype == torch.float32 and out.shape == (*shape[:-1], 48)
        ref = _bf16_reference(x, w)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_at, ref, rtol=1e-5, atol=1e-5)
        assert (out - x.detach() @ w.detach().t()).abs().max() > 0  # not fp32's product: bf16 rounding shows
        grad = torch.randn_like(out)
        gx, gw = torch.autograd.grad(out, (x, w), grad)
        rx, rw = torch.autograd.grad(ref, (x, w), grad)
        assert gx.dtype == gw.dtype == torch.float32
        torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-4)


def test_small_weights_and_other_products_stay_fp32():
    torch.manual_seed(0)
    x = torch.randn(50, 64)
    router = torch.randn(4, 64)  # the MoE router's 4 experts decide routes: fp32
    q, k = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 10, 16)
    with bf16_matmuls():
        assert torch.equal(x @ router.t(), torch.mm(x, router.t()))
        assert torch.equal(q @ k.transpose(-1, -2), torch.matmul(q, k.transpose(-1, -2)))  # attention scores: 4-D, fp32
        w64 = torch.randn(32, 64, dtype=torch.float64)
        out64 = F.linear(x.double(), w64)  # only fp32 products change
    assert out64.dtype == torch.float64 and torch.equal(out64, F.linear(x.double(), w64))


def test_a_model_under_it_stays_near_fp32_and_gets_fp32_gradients():
    torch.manual_seed(0)
    model = Transformer(model_config_from({"preset": "tiny"}))
    ids = torch.randint(0, model.config.vocab_size, (4, 24))
    with autocast("cpu", "fp32"):
        ref = model(ids)
    with autocast("cpu", "bf16-matmul"):
        logits = model(ids)
    assert logits.dtype == torch.float32
    assert ((logits - ref).norm() / ref.norm()).item() < 2e-2  # bf16 rounding, nothing more
    F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_sft_learns_under_it_and_logs_it(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", synth(256, seed=0, steps=1, max_operand=10))
    model_cfg, cfg = load_run_config(TINY, [f"sft.train_data={tmp_path / 'train.jsonl'}", f"sft.out_dir={tmp_path / 'run'}",
                                            "sft.max_steps=40", "sft.log_every=5", "sft.device=cpu", "sft.eval_data=null",
                                            "sft.dtype=bf16-matmul"])
    train_sft(model_cfg, cfg, progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[0]["dtype"] == "bf16-matmul"
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
