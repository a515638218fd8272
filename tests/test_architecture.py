"""The layout's rules, checked: who may import whom, tests that do not import each other,
benchmark scripts that import the installed package.

See ARCHITECTURE.md, "Packages and layers".
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: What a module under tests/ may import of tests/ (fixtures come from conftest.py, which
#: pytest loads itself).
SHARED_TEST_MODULES = {"tests.factories"}


def _lint_imports() -> Path:
    exe = Path(sys.executable).parent / "lint-imports"
    if exe.exists():
        return exe
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    return Path(found)


def test_import_layers_contract_is_kept() -> None:
    """The import-linter contracts of pyproject.toml ([tool.importlinter]) are kept."""
    res = subprocess.run([str(_lint_imports()), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"import-linter contract broken:\n{res.stdout}\n{res.stderr}"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Absolute module names ``path`` imports, relative imports resolved against tests/."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "tests" if node.level == 1 else ""
                mod = ".".join(p for p in (base, node.module or "") if p)
                if node.module is None:
                    out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
                    continue
                out.append((node.lineno, mod))
            elif node.module == "tests":
                out += [(node.lineno, f"tests.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module or ""))
    return out


def _test_module_imports() -> list[str]:
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        for lineno, mod in _imported_modules(path):
            if (mod == "tests" or mod.startswith("tests.")) and mod not in SHARED_TEST_MODULES \
                    and not any(mod.startswith(s + ".") for s in SHARED_TEST_MODULES):
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {mod}")
    return bad


def test_no_test_module_imports_another() -> None:
    """Test modules share code through conftest.py fixtures and tests/factories.py only."""
    bad = _test_module_imports()
    assert not bad, "test modules import other test modules (move what they share to conftest.py or " \
                    "tests/factories.py):\n" + "\n".join(bad)


def test_bench_scripts_do_not_patch_sys_path() -> None:
    """bench/ scripts import the installed package, not the working tree through sys.path."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(["git", "grep", "-n", "sys.path.insert", "--", "bench"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout == "", f"bench/ scripts patch sys.path:\n{res.stdout}"


def test_no_reference_to_design_notes_outside_the_repository() -> None:
    """The architecture is described inside the repository (ARCHITECTURE.md), not in a
    design file that only some checkouts have beside them."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(["git", "grep", "-n", "DESIGN.md", "--", ".", ":!tests/test_architecture.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout == "", f"references to a DESIGN.md outside the repository (point at ARCHITECTURE.md):\n{res.stdout}"
