"""The house's rules, read from the source: layers point one way, the CLI is a skin over the
library, one module writes to the terminal, one function builds each document."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gpusplit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """gpusplit modules a file imports when it runs (imports under `if TYPE_CHECKING:` left out, the
    modules the CLI loads on first use through `lazy_module("...")` counted)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for statement in node.body for n in ast.walk(statement))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_module":
            found.update(arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gpusplit") or a.name == "llama_cpp")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import api -> gpusplit.api; from .. import __version__ -> gpusplit
                    found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in SOURCES else module for a in node.names)
                    continue
            else:
                module = node.module or ""
            if module.startswith("gpusplit") or module == "llama_cpp":
                found.add(module)
    return found


SOURCES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports_of(prefix: str) -> dict[str, set[str]]:
    return {name: _runtime_imports(path) for name, path in SOURCES.items() if name == prefix or name.startswith(prefix + ".")}


def test_the_scan_sees_imports():
    assert "gpusplit.api" in _runtime_imports(SOURCES["gpusplit.cli.plan"]) | _runtime_imports(SOURCES["gpusplit.cli.options"])
    assert "llama_cpp" in _runtime_imports(SOURCES["gpusplit.engine.tasks"])


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the package under `root`, with this project's contracts (pyproject.toml)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
         str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        capture_output=True, text=True, timeout=300, cwd=root, env=env,
    )  # fmt: skip


def test_the_layer_contracts_hold():
    """pyproject.toml's contracts: every module in a layer (exhaustive), each importing only the
    layers below it (lazy imports included), llama_cpp only under engine/, no cycles in a package."""
    pytest.importorskip("importlinter", reason="import-linter is in the 'test' extra")
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "6 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("planning/predict.py", "from ..api import plan"),  # a lower layer reaching up, as the old hand test let pass
        ("planning/planner.py", "def _reach_up():\n    from ..cli import output"),  # lazily, inside a function
        ("devices/device.py", "from ..engine import registry"),  # devices below the engine
        ("planning/memory.py", "import llama_cpp"),  # llama.cpp outside the engine
        ("engine/tasks.py", "def _plan():\n    from ..planning.planner import rank"),  # the engine runs params, plans nothing
        ("jobs/bench.py", "from ..documents.render import plan_document"),  # a job rendering its own document
        ("base/units.py", "from ..gguf import reader"),  # the base imports nothing of gpusplit
        ("sources/hub.py", "from ..synthetic import demo"),  # siblings stay apart
        ("planning/request.py" if (PACKAGE / "planning" / "request.py").exists() else "planning/values.py", "import typer"),
    ],
)
def test_the_contracts_catch_a_wrong_import(tmp_path, module, line):
    pytest.importorskip("importlinter", reason="import-linter is in the 'test' extra")
    shutil.copytree(PACKAGE, tmp_path / "gpusplit", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "gpusplit" / module
    target.write_text(target.read_text() + "\n\n" + line + "\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


def test_the_cli_holds_no_planning_or_engine_logic():
    """cli/ parses options, calls the library and renders: it imports the API, the document
    builders and small helpers, never the planner, memory model, runner or engine."""
    allowed = {
        "gpusplit.api",
        "gpusplit.documents",  # the documents: built, read back, results files
        "gpusplit.base",  # errors, units, untrusted text made safe, results files, the version
        "gpusplit.devices.catalog",  # the catalog table that devices --catalog lists
        "gpusplit.sources",  # what kind of place a model location names (a URL cannot be run)
    }
    for name, imports in _imports_of("gpusplit.cli").items():
        outside = sorted(
            i for i in imports if not i.startswith("gpusplit.cli") and not any(i == a or i.startswith(a + ".") for a in allowed)
        )
        assert not outside, f"{name} imports {outside}"


def _writes(path: Path) -> list[str]:
    """Calls that write to the terminal: print(), sys.stdout/sys.stderr .write, typer.echo."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("print", "typer.echo", "click.echo") or func.startswith(("sys.stdout.", "sys.stderr.")):
                found.append(f"{path.name}:{node.lineno} {func}")
    return found


def test_only_the_output_module_writes_to_the_terminal():
    # engine/child.py writes to its pipes: the protocol to the parent, not a terminal.
    exempt = {PACKAGE / "cli" / "output.py", PACKAGE / "engine" / "child.py"}
    writes = [w for p in PACKAGE.rglob("*.py") if p not in exempt for w in _writes(p)]
    assert not writes
    assert _writes(PACKAGE / "cli" / "output.py")  # the scan finds writes where they are


def test_each_document_is_built_in_one_place():
    """The `schema` constants of the documents appear, as values, only under documents/."""
    names = ["gpusplit.plan/2", "gpusplit.run/3", "gpusplit.bench/3", "gpusplit.devices/2", "gpusplit.inspect/1"]
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "documents":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "schema" and isinstance(value, ast.Constant):
                        assert value.value not in names, f"{path.name} builds {value.value}"


def test_import_gpusplit_exports_the_api_lazily():
    code = (
        "import sys, gpusplit\n"
        "heavy = sorted(m for m in ('gpusplit.api', 'gpusplit.planning.planner', 'llama_cpp', 'numpy') if m in sys.modules)\n"
        "names = [n for n in gpusplit.__all__ if n != '__version__']\n"
        "missing = [n for n in names if getattr(gpusplit, n, None) is None]\n"
        "print(json.dumps({'heavy': heavy, 'missing': missing, 'exports': sorted(gpusplit._EXPORTS)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout)
    assert report["heavy"] == []  # importing the package costs nothing until a name is used
    assert report["missing"] == []
    import gpusplit

    assert sorted(set(gpusplit.__all__) - {"__version__"}) == report["exports"]


def test_no_module_shadows_an_exported_name():
    """Importing a submodule sets it as an attribute of the package: a module named like an
    exported function (`gpusplit/bench.py` beside `gpusplit.bench()`) would replace it."""
    import importlib

    import gpusplit

    modules = {name.split(".")[1] for name in SOURCES if name.count(".") >= 1}
    for name in modules:
        importlib.import_module(f"gpusplit.{name}")
    clashes = sorted(set(gpusplit._EXPORTS) & modules)
    assert not clashes, f"modules named like exported names: {clashes}"
    assert all(not isinstance(getattr(gpusplit, n), type(gpusplit)) for n in gpusplit._EXPORTS)


def _imports_the_package_root(path: Path, package_dir: Path = PACKAGE) -> list[str]:
    """`import gpusplit` or `from gpusplit import name` (`from .. import name` where that resolves
    to the root) other than a submodule: the root's lazy face imports by string, so such an import
    would pass every contract while reaching the API from anywhere."""
    tree = ast.parse(path.read_text())
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    package = parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_module":
            found += [f"{path.name}:{node.lineno}" for a in node.args if isinstance(a, ast.Constant) and a.value == "gpusplit"]
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}" for a in node.names if a.name == "gpusplit"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            if target == "gpusplit":
                submodule = [
                    a.name for a in node.names if (package_dir / a.name).is_dir() or (package_dir / f"{a.name}.py").exists()
                ]
                found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name not in submodule]
    return found


def _root_imports(package_dir: Path) -> list[str]:
    return [
        f
        for p in package_dir.rglob("*.py")
        if p != package_dir / "__init__.py"
        for f in _imports_the_package_root(p, package_dir)
    ]


def test_no_module_imports_the_package_root():
    assert _root_imports(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("planning/memory.py", "def _reach():\n    import gpusplit\n\n    return gpusplit.plan"),
        ("jobs/tune.py", "from .. import plan"),
        ("engine/tasks.py", "from gpusplit import run"),
        ("cli/plan.py", "api = lazy_module('gpusplit')"),
    ],
)
def test_the_root_import_scan_catches_one(tmp_path, module, line):
    shutil.copytree(PACKAGE, tmp_path / "gpusplit", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "gpusplit" / module
    target.write_text(target.read_text() + "\n\n" + line + "\n")
    assert len(_root_imports(tmp_path / "gpusplit")) == 1


# ---------------------------------------------------------------------------------------------
# Reasons are picked by code

# names a reason, warning or note (or a list of them) goes by in gpusplit and its tests
_REASONISH = re.compile(r"^(r|w|n|a|reason|reasons|warning|warnings|note|notes|assumption|assumptions|why)\d*$")
_TEXT_TESTS = {"startswith", "endswith", "find", "index", "count", "replace", "split", "partition", "search", "match"}


def _reads_reason_text(node: ast.AST) -> bool:
    """`reason.text` or `reason["text"]` (the base a reason-ish name, or an item of a list of them)."""
    for sub in ast.walk(node):
        base = None
        if (isinstance(sub, ast.Attribute) and sub.attr == "text") or (
            isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) and sub.slice.value == "text"
        ):
            base = sub.value
        while isinstance(base, ast.Subscript) and not (
            isinstance(base.slice, ast.Constant) and isinstance(base.slice.value, str)
        ):
            base = base.value  # reasons[0].text
        if isinstance(base, ast.Name) and _REASONISH.match(base.id):
            return True
        if isinstance(base, ast.Subscript) and isinstance(base.slice, ast.Constant) and _REASONISH.match(str(base.slice.value)):
            return True
        if isinstance(base, ast.Attribute) and _REASONISH.match(base.attr):
            return True
    return False


def text_selections(source: str) -> list[int]:
    """Lines where code compares a reason's text, searches it or edits it (printing it is fine)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Compare) and any(_reads_reason_text(part) for part in [node.left, *node.comparators])) or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _TEXT_TESTS
            and (_reads_reason_text(node.func.value) or any(_reads_reason_text(arg) for arg in node.args))
        ):
            found.append(node.lineno)
    return found


def test_no_code_or_test_selects_a_reason_by_its_text():
    """Reasons, warnings and notes carry a code for programs and a text for people: code and tests
    pick them by code, so that the wording can change without breaking anything."""
    root = Path(__file__).resolve().parent.parent
    offenders = {
        str(path.relative_to(root)): lines
        for folder in ("gpusplit", "tests", "benchmarks", "scripts", "examples")
        for path in sorted((root / folder).rglob("*.py"))
        if (lines := text_selections(path.read_text()))
    }
    assert not offenders, offenders


@pytest.mark.parametrize(
    "line",
    [
        'if "tensor parallelism" in reason.text: pass',
        'assert doc["warnings"][0]["text"].startswith("the context")',
        'picked = [w for w in plan.warnings if w.text == "no GPU"]',
        'hint = note["text"].replace("--ngl", "n_gpu_layers")',
    ],
)
def test_the_text_scan_catches_one(line):
    assert text_selections(line) == [1]
