"""The one direction of imports (ARCHITECTURE.md): spec imports nothing of the project,
hw and golden import spec only, compiler imports spec and golden, tessera is the CLI.

Checked two ways: what ``import spec`` (and each spec module) actually loads, in a fresh
interpreter, and every import statement in every source file of each package (including
imports inside functions, which a runtime check would only see when they run)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("spec", "hw", "golden", "compiler", "verif", "synth", "tessera")

#: package -> the project packages it may import.
ALLOWED = {
    "spec": set(),
    "hw": {"spec"},
    "golden": {"spec"},
    "compiler": {"spec", "golden"},
    "synth": {"spec", "hw"},
    "verif": {"spec", "hw", "golden", "compiler", "synth"},
    "tessera": set(PROJECT) - {"tessera"},
}


def _imports(path: Path) -> set[str]:
    """Top-level names of the project packages that ``path`` imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PROJECT}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for target in _imports(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "imports against the layering rule:\n" + "\n".join(bad)


def test_importing_spec_loads_no_project_package_and_no_torch():
    modules = sorted(p.stem for p in (ROOT / "spec").glob("*.py") if p.stem != "__init__")
    code = ("import json, sys; import spec; " + "; ".join(f"import spec.{m}" for m in modules)
            + "; print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout)
    offending = [m for m in loaded if m.split(".")[0] in set(PROJECT) - {"spec"} | {"torch"}]
    assert modules and not offending, f"import spec loaded {offending}"
