"""The house rules the layout promises, checked on the code itself: the layer contract (and that it catches a
violation), who may see the whole Settings, thin tasks, small modules, and a docstring per layer saying what it may
import."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = ("retrieval", "reasoning", "evaluation", "feedback", "monitoring", "ops", "serving")
SEES_SETTINGS = ("reasonloop.settings", "reasonloop.providers", "reasonloop.cli", "flows")  # and their modules
MAX_MODULE_LINES = 400


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)})


def test_the_layer_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("reasonloop/retrieval/chunking.py", "from reasonloop.evaluation import metrics", 
     "reasonloop.retrieval is not allowed to import reasonloop.evaluation"),
    ("reasonloop/monitoring/runs.py", "from reasonloop import settings",
     "reasonloop.monitoring is not allowed to import reasonloop.settings"),
    ("reasonloop/evaluation/gate.py", "import tasks.gate", "reasonloop is not allowed to import tasks"),
    ("tasks/gate.py", "import flows.nightly_eval", "tasks is not allowed to import flows"),
])
def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path, module: str, line: str,
                                                                  broken: str) -> None:
    for folder in ("reasonloop", "tasks", "flows"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1 and broken in result.stdout, result.stdout + result.stderr


def test_only_flows_the_cli_and_the_factory_see_the_whole_settings() -> None:
    seen = []
    for path in python_files("reasonloop", "tasks", "flows"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "reasonloop.settings" \
                    and any(alias.name == "Settings" for alias in node.names):
                seen.append(module_name(path))
    outside = [m for m in seen if not m.startswith(SEES_SETTINGS)]
    assert not outside, f"take the section you use, not Settings: {outside}"
    assert {"reasonloop.providers", "flows.nightly_eval"} <= set(seen)  # the scan does see them


def test_tasks_wrap_the_core_and_query_nothing_themselves() -> None:
    """MLflow, Chroma and Great Expectations are reached through core functions; a task adds Prefect's retries,
    caching, logging, events and artifacts."""
    for path in python_files("tasks"):
        imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Import | ast.ImportFrom)
                    for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
        assert not imported & {"mlflow", "chromadb", "great_expectations", "pandas"}, path.name


def test_no_module_is_over_the_size_the_house_allows() -> None:
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines())
             for p in python_files("reasonloop", "tasks", "flows")}
    assert not {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES}


@pytest.mark.parametrize("layer", [*LAYERS, "cli"])
def test_each_layer_says_what_lives_there_and_what_it_may_import(layer: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "reasonloop" / layer / "__init__.py").read_text(encoding="utf-8")))
    assert doc and ("May import" in doc or layer == "cli"), layer
    named = {p.name for p in (ROOT / "reasonloop" / layer).glob("*.py")} - {"__init__.py", "__main__.py"}
    assert not {n for n in named if f"`{n}`" not in doc and f"`{n.removesuffix('.py')}`" not in doc}, layer


def test_every_import_of_the_benchmarks_resolves() -> None:
    """`make bench` is not run by the tests; its imports (most inside functions, to keep start-up light) are
    checked here, so a moved or renamed function breaks this test rather than a half-hour benchmark run."""
    import importlib

    missing = []
    for path in python_files("tests/benchmarks", "tests/support"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] in {"reasonloop", "tasks", "flows", "tests"}:
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing


def private_uses(source: str) -> list[str]:
    """`obj._name` on anything but self/cls/super(), and names or modules imported from a library's private
    module or under a private name: what a library release may remove without notice."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not ((isinstance(owner, ast.Name) and owner.id in ("self", "cls"))
                    or (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super")):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(
                ("reasonloop", "flows", "tasks", "__future__")):
            private = [a.name for a in node.names if a.name.startswith("_")]
            if private or any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
    return found


def test_no_private_name_of_a_library_is_used() -> None:
    """LangChain, OpenAI, MLflow, Prefect and Chroma are used through their public interfaces only."""
    used = {str(p.relative_to(ROOT)): uses for p in python_files("reasonloop", "flows", "tasks")
            if (uses := private_uses(p.read_text(encoding="utf-8")))}
    assert used == {}
    assert private_uses("reply = await model._agenerate(messages)") == ["line 1: ._agenerate"]  # the check bites
    assert private_uses("from mlflow.tracing._client import X") and not private_uses("self._lock.acquire()")
