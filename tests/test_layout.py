"""Imports flow one way (DESIGN.md): the model knows nothing of training, tokenizers or HTTP; the
CLI imports its heavy modules lazily."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "r1kit"

# what each module may import from r1kit; nothing may import cli (or, later, serve)
ALLOWED = {
    "config": set(),
    "multiscale_kernel": set(),
    "attention": {"config", "multiscale_kernel"},
    "moe": {"config"},
    "kv_cache": set(),
    "model": {"config", "attention", "moe", "multiscale_kernel"},
    "checkpoint": {"config", "model"},
    "tokenizer": {"verify"},
    "verify": set(),
    "data": set(),
    "synth": {"data"},
    "evaluate": {"data", "engine", "model", "moe", "tokenizer", "verify"},
    "engine": {"kv_cache", "model", "checkpoint", "tokenizer"},
    "export": {"checkpoint", "model", "tokenizer"},
    "report": {"data"},
    "claims": {"checkpoint", "config", "data", "evaluate", "grpo", "sft", "synth", "tokenizer"},
    "demo": {"checkpoint", "config", "data", "evaluate", "grpo", "report", "sft", "synth", "tokenizer"},
    "grpo": {"config", "checkpoint", "data", "engine", "evaluate", "model", "sft", "tokenizer", "verify"},
}


def _r1kit_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("r1kit."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "r1kit":  # from r1kit import x
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("r1kit.")}
    return names


def test_imports_flow_one_way():
    for path in PACKAGE.glob("*.py"):
        imported = _r1kit_imports(path)
        assert "cli" not in imported, f"{path.name} imports the CLI"
        if path.stem in ALLOWED:
            assert imported <= ALLOWED[path.stem], f"{path.stem} imports {imported - ALLOWED[path.stem]}"


def test_cli_help_does_not_import_torch():
    code = "import sys, r1kit.cli as c; c.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
