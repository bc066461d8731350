"""Configuration: presets, files, overrides, and errors that name the key and what is allowed."""

import json

import pytest

from r1kit.config import ConfigError, ModelConfig, load_model_config, preset


def test_defaults_and_presets_validate():
    assert ModelConfig().attention.kind == "multiscale"
    tiny = preset("tiny")
    assert tiny.moe.n_experts == 4 and tiny.head_dim == 8
    with pytest.raises(ConfigError, match="allowed: demo, llama-tiny, tiny"):
        preset("huge")


def test_yaml_and_json_files_with_overrides(tmp_path):
    (tmp_path / "m.yaml").write_text("model:\n  preset: tiny\n  dim: 48\n  moe:\n    balancing: bias\n")
    cfg = load_model_config(tmp_path / "m.yaml", ["n_layers=3", "attention.kind=dense", "moe.capacity_factor=1.25"])
    assert (cfg.dim, cfg.n_layers, cfg.vocab_size) == (48, 3, 64)  # file over preset, override over file
    assert cfg.moe.balancing == "bias" and cfg.moe.n_experts == 4 and cfg.moe.capacity_factor == 1.25
    assert cfg.attention.kind == "dense"
    (tmp_path / "m.json").write_text(json.dumps(cfg.model_dump()))
    assert load_model_config(tmp_path / "m.json") == cfg


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_model_config(overrides=["moe.n_expert=8"])
    msg = str(err.value)
    assert "unknown key 'moe.n_expert'" in msg and "did you mean 'n_experts'" in msg
    assert "allowed keys:" in msg and "balancing" in msg and "top_k" in msg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("moe.balancing=entropy", "'none', 'load_penalty', 'aux_loss' or 'bias'"),
        ("attention.kind=sparse", "'dense' or 'multiscale'"),
        ("layer_drop=1.5", "less than 1"),
        ("attention.window=0", "greater than or equal to 1"),
        ("moe.top_k=9", "top_k=9 must be <= n_experts=4"),
        ("dim=30", "divisible by n_heads"),
        ("attention.branches=[local,sparse]", "'local', 'global' or 'symbolic'"),
        ("attention.branches=[local,local]", "names a branch twice"),
        ("attention.branches=[]", "at least 1 item"),
    ],
)
def test_out_of_range_value_names_key_and_allowed_values(override, expected):
    with pytest.raises(ConfigError) as err:
        load_model_config(overrides=[override], preset_name="tiny")
    assert expected in str(err.value)
    key = override.split("=")[0]
    if key not in ("moe.top_k", "dim"):  # cross-field checks name both fields in the message instead
        assert key in str(err.value)


@pytest.mark.parametrize("text", ["a: [1, 2", "- 1\n- 2\n"])
def test_bad_files_fail_clearly(tmp_path, text):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_model_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_model_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_model_config(overrides=["dim"])


def test_the_configuration_reference_is_printed_from_the_code(capsys):
    """`r1kit config --explain` lists every key of the model, sft and rl sections with its default and why."""
    import json

    from r1kit.cli import main
    from r1kit.config import AttentionConfig, MoEConfig
    from r1kit.train.grpo import RLConfig
    from r1kit.train.sft import SFTConfig

    assert main(["config", "--explain"]) == 0
    out = capsys.readouterr().out
    sections = (("model.", ModelConfig), ("model.attention.", AttentionConfig), ("model.moe.", MoEConfig),
                ("sft.", SFTConfig), ("rl.", RLConfig))
    for prefix, cls in sections:
        block = out[out.index(prefix.split(".")[0] + ":"):]
        for name, field in cls.model_fields.items():
            if name in ("attention", "moe"):
                continue
            key = prefix.split(".", 1)[1] + name
            default = "(required)" if field.is_required() else json.dumps(field.get_default(call_default_factory=True))
            assert f"\n  {key} = {default}\n" in block, f"--explain lacks {prefix}{name} = {default}"
            assert field.description, f"{prefix}{name} has no description (say why it has its default)"
