"""Export a dense-configured checkpoint to the Hugging Face Llama format, so that it runs in the
wider ecosystem (`transformers`, vLLM, llama.cpp converters) and can be compared side by side.

    r1kit export-hf runs/dense/final runs/dense-hf
    LlamaForCausalLM.from_pretrained("runs/dense-hf")

With `attention.kind = "dense"` and `moe.n_experts = 0` the r1kit model is exactly Llama (the
rotary tables use the Hugging Face half-split layout, so q/k need no permutation); the export is
a renaming of tensors (r1kit's fused q/k/v and gate/up matrices split again) plus a config. MoE
layers and multi-scale attention have no Llama equivalent, so such checkpoints are refused. Needs no `transformers` to write.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from r1kit.interop.checkpoint import atomic_directory, load_pretrained
from r1kit.model.transformer import Transformer
from r1kit.data.tokenizer import Tokenizer
from r1kit.format import ASSISTANT, BOS, CHAT_TEMPLATE, END_THINK, EOS, PAD, THINK, USER

# stamped on the exported weights: export-hf replaces only a folder it wrote itself
HF_EXPORT_MARKER = {"exported_by": "r1kit export-hf"}

# r1kit name piece -> Hugging Face Llama name piece, applied in order
_RENAMES = [
    ("embed.", "model.embed_tokens."),
    ("layers.", "model.layers."),
    (".attn_norm.", ".input_layernorm."),
    (".ffn_norm.", ".post_attention_layernorm."),
    (".attn.", ".self_attn."),
    (".ffn.", ".mlp."),
]
_NOT_EXPORTED = {"symbol_flags_V"}  # r1kit-only buffer: the symbolic branch does not exist in Llama


class ExportError(ValueError):
    pass


def check_exportable(model: Transformer) -> None:
    cfg = model.config
    reasons = []
    if cfg.attention.kind != "dense":
        reasons.append(f"attention.kind is {cfg.attention.kind!r} (Llama has dense causal attention only)")
    if cfg.moe.n_experts:
        reasons.append(f"moe.n_experts is {cfg.moe.n_experts} (Llama has one dense SwiGLU per layer, no experts)")
    if reasons:
        raise ExportError("only a dense configuration exports to the Llama format: " + "; ".join(reasons))


def _split_fused(model: Transformer) -> dict[str, torch.Tensor]:
    """r1kit's state dict with the fused projections split into Llama's separate matrices."""
    cfg = model.config
    q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith(".qkv_proj.weight"):
            stem = name.removesuffix(".qkv_proj.weight")
            for part, rows in zip(("q_proj", "k_proj", "v_proj"), tensor.split([q_rows, kv_rows, kv_rows])):
                state[f"{stem}.{part}.weight"] = rows
        elif name.endswith(".gate_up_proj.weight"):
            stem = name.removesuffix(".gate_up_proj.weight")
            gate, up = tensor.chunk(2)
            state[f"{stem}.gate_proj.weight"], state[f"{stem}.up_proj.weight"] = gate, up
        else:
            state[name] = tensor
    return state


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    check_exportable(model)
    state = {}
    for name, tensor in _split_fused(model).items():
        if name in _NOT_EXPORTED:
            continue
        if name == "norm.weight":
            hf_name = "model.norm.weight"
        else:
            hf_name = name
            for old, new in _RENAMES:
                hf_name = hf_name.replace(old, new)
        state[hf_name] = tensor.detach().contiguous()
    return state


def hf_config(model: Transformer, tok: Tokenizer | None = None) -> dict:
    cfg = model.config
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.dense_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers < 5
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # transformers >= 5
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    if tok is not None:
        config.update(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    return config


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write config.json, model.safetensors, generation_config.json and the tokenizer files
    (PreTrainedTokenizerFast, with the chat template) to out_dir, atomically."""
    model = load_pretrained(checkpoint)
    check_exportable(model)
    tok = Tokenizer.load(checkpoint)
    state, config = hf_state_dict(model), hf_config(model, tok)

    def write(d: Path) -> None:
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt", **HF_EXPORT_MARKER})
        (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        generation = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
        (d / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        tok.backend.save(str(d / "tokenizer.json"))
        tokenizer_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
            "additional_special_tokens": [USER, ASSISTANT, THINK, END_THINK],
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": model.config.max_seq_len,
            "clean_up_tokenization_spaces": False,
        }
        (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")

    return atomic_directory(out_dir, write, marker=HF_EXPORT_MARKER)
