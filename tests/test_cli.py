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
