"""The docs site: it builds with --strict, its reference pages are generated from the code (every configuration key
and every command is on them), and a reference to a file, test, make target or command that does not exist is
caught."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks" / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                             "PATH": str(mkdocs.parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


def leaf_keys(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_configuration_key_is_in_the_generated_reference(hooks: ModuleType) -> None:
    from reasonloop.settings import Settings

    page = hooks.configuration_page()
    missing = [key for key in leaf_keys(Settings) if f"`{key}`" not in page]
    assert not missing
    unexplained = [row.split("|")[1].strip() for row in page.splitlines() if row.startswith("| `")
                   and row.rstrip().endswith("|  |")]
    assert not unexplained, "give these a Field description or a comment in configs/default.yaml"
    assert "| `retrieval.top_k` | integer | `4` | chunks handed to the reasoner |" in page  # from default.yaml


def test_every_command_is_in_the_generated_cli_reference(hooks: ModuleType) -> None:
    page = hooks.cli_page()
    for command, subcommands in hooks.cli_commands().items():
        assert f"## `reasonloop {command}`" in page
        assert all(f"## `reasonloop {command} {sub}`" in page for sub in subcommands)
    assert "| `--candidate` | str | required |" in page


def test_a_stale_reference_is_named(hooks: ModuleType) -> None:
    fine = ("`reasonloop/settings.py`, `tests/test_docs.py::test_a_stale_reference_is_named`, `make docs`, "
            "`reasonloop index rollback`, `reasonloop --profile openai run`")
    assert hooks.stale_references(fine, "page.md") == []
    stale = ("`reasonloop/gone.py`, `tests/test_docs.py::test_nothing`, `make deploy`, `reasonloop launch`, "
             "`reasonloop index rebuild`")
    assert hooks.stale_references(stale, "page.md") == [
        "page.md: reasonloop/gone.py does not exist", "page.md: tests/test_docs.py has no test_nothing",
        "page.md: no make target 'deploy'", "page.md: no command `reasonloop launch`",
        "page.md: no command `reasonloop index rebuild`"]
