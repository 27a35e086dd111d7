"""The floor plan (docs/design.md): imports point only down, and the ground floor stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each package and the packages of ours it may import, besides itself.
MAY_IMPORT = {
    "contracts": set(),
    "tokenizer": {"contracts"},
    "pipeline": {"contracts", "tokenizer"},
    "trainer": {"contracts", "tokenizer"},
    "launch": {"contracts"},
}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that a module imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_imports_point_only_down(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported - MAY_IMPORT[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
        if (imported := imported_packages(path)) - MAY_IMPORT[package] - {package}
    }
    assert not wrong, f"imports that point up or sideways: {wrong}"


@pytest.mark.parametrize(
    "module",
    [
        "contracts.storage",
        "contracts.metadata",
        "contracts.schema",
        "contracts.lines",
        "tokenizer.vocab",
        "tokenizer.tokenize",
        "pipeline.extract_text",
        "pipeline.build_vocab",
    ],
)
def test_modules_that_need_no_tensorflow_do_not_import_it(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False", f"{module} imports TensorFlow"
