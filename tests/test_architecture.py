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
    assert openers == ["report/card.py", "runtime/session.py"], openers  # the card shows users a snippet


def test_the_default_path_imports_no_torch_at_module_level():
    """torch and timm are imported inside the functions of the torch extra only."""
    for path in sorted(SRC.rglob("*.py")):
        top = ast.parse(path.read_text()).body
        names = {a.name.split(".")[0] for node in top if isinstance(node, ast.Import) for a in node.names}
        names |= {node.module.split(".")[0] for node in top if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & {"torch", "timm", "torchvision"}, path


# --- the map: packages on floors, data flowing one way (issue 26) -----------------------------------------------

#: Each package may import only from the floors below its own (and from itself). Files → photos with labels →
#: embeddings → head and rule → model folder → answers, with the kernel at the bottom and the front ends on top.
FLOORS = [
    {"errors"},
    {"files"},
    {"runtime"},
    {"backbones", "data", "heads"},
    {"embeddings"},
    {"checks", "engines", "evaluation", "exports", "report"},
    {"training"},
    {"project"},
    {"serve"},
    {"studio"},
    {"cli", "__init__"},
]


def _package(name: str) -> str:
    return name.split("/")[0].removesuffix(".py")


def _ours(used: set[str]) -> set[str]:
    return {m.split(".")[1] for m in used if m.startswith("imgclf.") and m != "imgclf.__version__"}


def test_no_import_runs_back_up_a_floor():
    floor = {pkg: i for i, pkgs in enumerate(FLOORS) for pkg in pkgs}
    for name, used in modules().items():
        here = _package(name)
        for other in _ours(used) - {here}:
            assert floor[other] < floor[here], f"{name} ({here}, floor {floor[here]}) imports {other} (floor {floor[other]})"


def test_the_top_holds_only_the_public_api_errors_and_packages():
    loose = sorted(p.name for p in SRC.iterdir() if p.is_file() and p.suffix == ".py")
    assert loose == ["__init__.py", "errors.py"], loose
    for init in sorted(SRC.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split(". ")[0]) > 20, f"{init.parent.name}/__init__.py does not say what the package holds"


def _module_imports() -> dict[str, set[str]]:
    """Every module's imports of other imgclf modules, by module name; ``from package import submodule`` counts as the
    submodule (the package's own code is not what it uses)."""
    names = {"imgclf." + str(p.relative_to(SRC)).removesuffix(".py").removesuffix("/__init__").replace("/", "."): p
             for p in SRC.rglob("*.py")}
    names["imgclf"] = names.pop("imgclf.__init__")
    out = {}
    for name, path in names.items():
        used = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("imgclf"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                used |= {s for s in subs if s in names}
                if any(s not in names and not s.endswith(".__version__") for s in subs):
                    used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {a.name for a in node.names if a.name in names}
        out[name] = used - {name}
    return out


def test_no_module_imports_itself_in_a_circle():
    """Module by module, imports inside functions included: no circle of any length."""
    deps = _module_imports()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(deps.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            visit(m, [m])


def test_no_function_is_longer_than_a_screen():
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 85, f"{path.relative_to(SRC)}: {node.name} is {node.end_lineno - node.lineno + 1} lines"
