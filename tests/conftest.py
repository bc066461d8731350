import pytest
import torch

from r1kit.config import ModelConfig, preset
from r1kit.model.transformer import Transformer

ATTENTION_KINDS = ("dense", "multiscale")
BALANCING_MODES = ("none", "load_penalty", "aux_loss", "bias")


def make_model(seed: int = 0, symbol_share: float = 0.3, **changes) -> Transformer:
    """The tiny preset with `changes` (attention=..., moe=... merged into their sections), random
    weights and random symbol flags."""
    data = preset("tiny").model_dump()
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**data))
    model.set_symbol_flags(torch.rand(model.config.vocab_size) < symbol_share)
    return model


@pytest.fixture(autouse=True)
def _fp32_single_seed():
    torch.manual_seed(0)
    yield
