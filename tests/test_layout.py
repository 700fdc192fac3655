"""The dependency rule (docs/design.md, Layout), checked on the source: arrows point one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sources(package):
        for name in imported_modules(path):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("drivers", ("edge", "buffer")),
    ("buffer", ("edge", "drivers")),
])
def test_libraries_never_import_the_agent(package, forbidden):
    assert sources(package), f"{package}/ has no sources"
    assert offenders(package, forbidden) == []


def test_rule_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from edge.config import Config\nimport edge.agent\n")
    assert imported_modules(bad) == {"edge.config", "edge.agent"}


def test_only_the_demo_imports_the_simulators():
    allowed = {"edge/demo.py"}
    found = []
    for path in sources("edge"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("edge/simulate/") or rel in allowed:
            continue
        if any(n.startswith("edge.simulate") for n in imported_modules(path)):
            found.append(rel)
    assert found == []


def test_the_agent_never_imports_the_command_line_face():
    found = [p.relative_to(ROOT).as_posix() for p in sources("edge")
             if not p.relative_to(ROOT).as_posix().startswith("edge/cli/")
             and any(name == "edge.cli" or name.startswith("edge.cli.") for name in imported_modules(p))]
    assert found == []
