"""The import direction inside ``kernels``: a public module (``kernels/<family>.py``)
checks arguments and dispatches to a backend; the backends (``kernels/cpu``,
``kernels/cuda``) never import a public module, only the shared helpers below both
(``kernels._*``: ``_checks``, ``_alloc``, ``_rules``, and ``kernels.reference``) and
their own package. The shared helpers import neither public modules nor backends.

Read from the source with ``ast`` (every import, including those inside functions),
so nothing is imported and no kernel compiles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kernels"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for each module ``path`` imports (its source, or
    ``text`` as if it were there); ``from P import n`` counts as ``P.n`` where that is
    a module (``from .. import pool``), else as ``P``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                sub = ROOT.parent / Path(*module.split(".")) / alias.name
                is_module = sub.is_dir() or sub.with_suffix(".py").exists()
                found.append((node.lineno, f"{module}.{alias.name}" if is_module else module))
    return found


def _allowed_for_shared(module: str) -> bool:
    """What the shared helpers may import: other shared helpers, the reference, or
    anything outside ``kernels``."""
    parts = module.split(".")
    if parts[0] != "kernels" or len(parts) == 1:
        return parts[0] != "kernels"
    return parts[1].startswith("_") or parts[1] == "reference"


def _violations(paths, allowed, text: str | None = None) -> list[str]:
    return [f"{p.relative_to(ROOT.parent)}:{line} imports {module}"
            for p in paths for line, module in _imports(p, text) if not allowed(module)]


def _backend_files(backend: str) -> list[Path]:
    files = sorted((ROOT / backend).rglob("*.py"))
    assert files, f"no modules found under kernels/{backend}"
    return files


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_backends_never_import_a_public_module(backend):
    def allowed(module: str) -> bool:
        parts = module.split(".")
        return _allowed_for_shared(module) or (len(parts) > 1 and parts[1] == backend)

    assert _violations(_backend_files(backend), allowed) == []


def test_shared_helpers_import_only_shared_helpers():
    # (``python -m kernels``, the warmup command, is an entry point: the top of the stack)
    shared = [p for p in sorted(ROOT.rglob("*.py"))
              if p.relative_to(ROOT).parts[0].startswith("_")
              and p.relative_to(ROOT).parts[0] not in ("__init__.py", "__main__.py")]
    shared += sorted((ROOT / "reference").rglob("*.py"))
    assert any(p.parent.name == "_rules" for p in shared)
    assert _violations(shared, _allowed_for_shared) == []


@pytest.mark.parametrize("source,bad", [
    ("from .. import pool as host\n", True),
    ("from ..conv import _forward_args\n", True),
    ("import kernels.norm\n", True),
    ("def f():\n    from kernels import activation\n", True),
    ("from .. import _checks\nfrom .._rules.conv import _geometry\n", False),
    ("from ..reference.correlate import window1d\nfrom . import conv\n", False),
    ("from ._arrays import device\nimport numpy as np\n", False),
])
def test_the_check_sees_a_public_import(source, bad):
    """The walker itself, on source written as if it were a module of kernels/cuda: a
    public import is flagged wherever it is written."""
    probe = ROOT / "cuda" / "_layout_probe.py"
    found = _violations([probe], lambda m: _allowed_for_shared(m) or m.startswith(
        "kernels.cuda"), source)
    assert bool(found) is bad, found
