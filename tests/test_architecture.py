"""The boundaries docs/design.md states, read from the source's own imports."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src" / "imgclf"
#: What the runtime kernel may use besides itself: errors and atomic writes.
RUNTIME_MAY_IMPORT = {"imgclf", "imgclf.errors", "imgclf.files"}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if node.module == "imgclf" and a.name != "__version__"}
    return out


def modules() -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_the_runtime_imports_none_of_its_clients():
    for name, used in modules().items():
        if not name.startswith("runtime/"):
            continue
        ours = {m for m in used if m == "imgclf" or m.startswith("imgclf.")}
        outside = {m for m in ours if not m.startswith("imgclf.runtime") and m not in RUNTIME_MAY_IMPORT}
        assert not outside, f"{name} imports {sorted(outside)}"


def test_onnx_runtime_is_used_only_by_the_runtime():
    """Sessions are made only by ``runtime/session.py``; ``--quantize`` uses ONNX Runtime's quantisation tool."""
    users = sorted(name for name, used in modules().items() if any(m.split(".")[0] == "onnxruntime" for m in used))
    assert users == ["backbones/quantize.py", "runtime/session.py"], users
    openers = sorted(name for name in modules() if "InferenceSession(" in (SRC / name).read_text())
    assert openers == ["model_card.py", "runtime/session.py"], openers  # the card shows users a snippet


def test_the_default_path_imports_no_torch_at_module_level():
    """torch and timm are imported inside the functions of the torch extra only."""
    for path in sorted(SRC.rglob("*.py")):
        top = ast.parse(path.read_text()).body
        names = {a.name.split(".")[0] for node in top if isinstance(node, ast.Import) for a in node.names}
        names |= {node.module.split(".")[0] for node in top if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & {"torch", "timm", "torchvision"}, path
