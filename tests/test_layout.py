"""Imports flow one way between r1kit's packages (README, "Layout"): one table of allowed
dependencies, checked on every module's imports, and the same table printed in the README."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r1kit"

# unit -> the units it may import from r1kit (a unit is a sub-package or a root module; an entry
# "data.tokenizer" allows that one module of a unit). Within a unit anything goes. Nothing imports cli.
ALLOWED = {
    "config": set(),
    "format": set(),
    "bf16_matmul": set(),
    "device": {"bf16_matmul"},
    "model": {"config"},
    "data": {"format"},
    "reward": {"format"},
    "interop": {"config", "model", "format", "data.tokenizer"},
    "inference": {"config", "model", "interop", "format", "device", "data.tokenizer"},
    "evaluate": {"config", "model", "inference", "reward", "data", "format", "device"},
    "train": {"config", "model", "inference", "reward", "data", "interop", "evaluate", "format", "device"},
    "recipes": {"config", "data", "interop", "train", "evaluate"},
    "serve": {"inference", "format", "data.tokenizer"},
    "cli_generate": {"inference", "serve"},
    "calibrate": {"inference", "reward", "data", "evaluate"},
    "cli_routing": {"train"},
    "cli_calibrate": {"calibrate"},
    "cli_data": {"data"},
    "cli": {"config", "format", "device", "model", "data", "reward", "interop", "inference", "evaluate", "train", "recipes", "cli_generate",
            "cli_routing", "cli_calibrate", "cli_data"},
}
NO_TORCH = {"config", "format", "data", "reward"}  # pure Python: usable without torch installed


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(r1kit modules as 'unit' or 'unit.module', top-level third-party packages) imported by `path`."""
    r1kit, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "r1kit":  # from r1kit import x
                r1kit |= {a.name for a in node.names}
            elif node.module.startswith("r1kit."):
                r1kit.add(".".join(node.module.split(".")[1:3]))
            else:
                other.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; r1kit uses absolute imports")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("r1kit."):
                    r1kit.add(".".join(a.name.split(".")[1:3]))
                else:
                    other.add(a.name.split(".")[0])
    return r1kit, other


def _allowed(unit: str, imported: str) -> bool:
    head = imported.split(".")[0]
    return head == unit or head in ALLOWED[unit] or imported in ALLOWED[unit]


def test_every_unit_is_in_the_table():
    units = {_unit(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units == set(ALLOWED), f"declare each package in ALLOWED: {units ^ set(ALLOWED)}"


def test_imports_flow_one_way():
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path)
        if unit == "__init__":
            continue
        r1kit, other = _imports(path)
        bad = sorted(m for m in r1kit if not _allowed(unit, m))
        assert not bad, f"{path.relative_to(ROOT)} ({unit}) imports {bad}; allowed: {sorted(ALLOWED[unit])}"
        if unit in NO_TORCH:
            assert "torch" not in other, f"{path.relative_to(ROOT)} imports torch; {unit} is pure Python"


def test_the_readme_prints_the_same_table():
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|$", (ROOT / "README.md").read_text(), re.MULTILINE)
    table = {unit: {d.strip(" `") for d in deps.split(",") if d.strip(" `-")} for unit, deps in rows}
    assert table == ALLOWED


def test_cli_help_does_not_import_torch():
    code = "import sys, r1kit.cli as c; c.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_pure_python_units_import_without_torch():
    modules = sorted(".".join(("r1kit", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                     for p in PACKAGE.rglob("*.py") if _unit(p) in NO_TORCH)
    code = f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
