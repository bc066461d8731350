"""The README shows the current state and stays inside the repository: no link out of it, every
results file it cites exists, and its package map lists exactly the package's files."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_link_stays_inside_the_repository():
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        assert not re.match(r"[a-z]+:|/|\.\./", target), f"README links outside the repository: {target}"
        assert (ROOT / target.split("#")[0]).exists(), f"README links a missing file: {target}"


def test_every_results_file_cited_exists_and_no_figure_is_left_to_fill():
    cited = set(re.findall(r"benchmarks/results/[\w.-]+\.json", README))
    assert cited, "the results table cites no results file"
    assert not [c for c in cited if not (ROOT / c).is_file()], "README cites results files that do not exist"
    assert "TODO" not in README


def test_the_package_map_lists_every_file_of_the_package():
    block = README[README.index("## Package map"):README.index("## Layout")]
    block = block[block.index("\nr1kit/\n"):block.index("\nbenchmarks/\n")]
    listed = set(re.findall(r"^  ([\w/]+\.(?:py|cpp))\s", block, re.MULTILINE))
    files = {str(p.relative_to(ROOT / "r1kit")) for p in (ROOT / "r1kit").rglob("*") if p.suffix in (".py", ".cpp")}
    files = {f for f in files if not f.endswith("__init__.py") or f in listed}
    assert listed & files == listed, f"the map lists files that do not exist: {sorted(listed - files)}"
    assert files <= listed, f"the map misses {sorted(files - listed)}"
