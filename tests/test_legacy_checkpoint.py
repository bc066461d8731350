"""Checkpoints written before the package split keep loading and computing the same logits.

tests/fixtures/ckpt_v0 was saved by commit 423ea8d's code (the flat r1kit/ package): a 2-layer
MoE (4 experts, top-2, load_penalty) with multi-scale attention (window 4, top-6), symbol flags on
ids 10-19, one training step taken so the router's loads are not at their initial values.
ckpt_v0_logits.safetensors holds a fixed input and the logits that code computed for it."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from r1kit.interop.checkpoint import load_pretrained

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_checkpoint_written_before_the_split_loads_with_the_same_logits():
    model = load_pretrained(FIXTURES / "ckpt_v0").eval()
    saved = load_file(str(FIXTURES / "ckpt_v0_logits.safetensors"))
    with torch.no_grad():
        logits = model(saved["input_ids"])
    torch.testing.assert_close(logits, saved["logits"], rtol=0, atol=1e-5)
