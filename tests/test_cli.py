import json

import pytest

from r1kit.cli import main


def test_init_then_info(tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert main(["init", "--preset", "tiny", "--out", str(out), "moe.n_experts=8", "moe.top_k=2"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["moe"]["n_experts"] == 8
    # tiny: dim 32, dense width 96, so an expert is 96 / top_k = 48 wide; 6 of 8 experts idle per token
    idle = 2 * (8 - 2) * 3 * 32 * 48
    assert info["parameters"] - info["active_parameters_per_token"] == idle


def test_config_error_exits_2_with_message(capsys):
    assert main(["config", "--preset", "tiny", "moe.balancing=entropy"]) == 2
    assert "moe.balancing" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("config", "init", "info"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from conftest import make_model
    from r1kit.interop.checkpoint import save_pretrained
    from r1kit.data.tokenizer import Tokenizer

    tok = Tokenizer.train(["Tom has 12 apples and buys 7 more. How many?", "12 + 7 = 19\n</think>\n#### 19"] * 20, vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=128)
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    path = tmp_path_factory.mktemp("cli") / "ckpt"
    save_pretrained(model, path, extra=tok.save)
    return path


def test_generate_streams_text_and_json_matches_it(checkpoint, capsys):
    assert main(["generate", str(checkpoint), "--prompt", "Tom has 12 apples.", "--max-new-tokens", "12"]) == 0
    streamed = capsys.readouterr().out
    assert main(["generate", str(checkpoint), "--prompt", "Tom has 12 apples.", "--max-new-tokens", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sample = out["samples"][0]
    assert len(sample["token_ids"]) == len(sample["logprobs"]) == 12 and sample["finish_reason"] == "length"
    # piped output marks the reasoning instead of dimming it; the text itself is the same
    assert streamed.removeprefix("[reasoning] ").rstrip("\n").replace("\n[answer] ", "") == sample["text"].replace("</think>", "")


def test_generate_prompt_too_long_is_a_clear_error(checkpoint, capsys):
    assert main(["generate", str(checkpoint), "--prompt", "apples " * 200]) == 2
    assert "context of 128" in capsys.readouterr().err


def test_chat_keeps_history_and_exits(checkpoint, capsys, monkeypatch):
    lines = iter(["How many apples?", "And now?", "/reset", "/exit"])
    prompts = []
    import r1kit.inference.engine as engine_mod

    real_stream = engine_mod.Engine.stream

    def spy(self, prompt, params=None):
        prompts.append(self.tokenizer.decode(prompt))
        return real_stream(self, prompt, params)

    monkeypatch.setattr(engine_mod.Engine, "stream", spy)
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(lines))
    assert main(["chat", str(checkpoint), "--max-new-tokens", "8"]) == 0
    assert "conversation forgotten" in capsys.readouterr().out
    assert len(prompts) == 2 and prompts[1].startswith(prompts[0].removesuffix("<|assistant|><think>\n"))
    assert prompts[1].count("<|user|>") == 2 and prompts[1].endswith("And now?<|assistant|><think>\n")
