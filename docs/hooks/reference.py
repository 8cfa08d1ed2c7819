"""MkDocs hooks: the configuration and CLI reference pages, generated from the code at every build so they cannot
drift from it, and a check that every file, test, make target and command the pages name exists (so do the README,
the data's README and the configuration files): a stale reference is a warning, which `mkdocs build --strict` turns
into a failed build."""

from __future__ import annotations

import logging
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.plugins.reasonloop")
ROOT = Path(__file__).resolve().parents[2]
CONFIG_PAGE, CLI_PAGE = "reference/configuration.md", "reference/cli.md"
PATH_REF = re.compile(r"(?<![\w./(-])((?:reasonloop|tasks|flows|tests|configs|data|docs)/[\w./-]*\w)(?:::(\w+))?")
MAKE_REF = re.compile(r"`make ([a-z][\w-]*)")
CLI_REF = re.compile(r"`reasonloop (?:--profile \S+ |-v )*([a-z][\w-]*)(?: ([a-z][\w-]*))?")
COMMENT = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[\w-]+):(?P<rest>.*)$")


# --- the configuration reference ------------------------------------------------------------------------------------

def comment_of(line: str) -> str | None:
    """The comment at the end of a YAML line (a '#' after whitespace, outside quotes), None without one."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1:].strip()
    return None


def yaml_comments(path: Path) -> dict[str, str]:
    """`section.key` -> the comment on its line in configs/default.yaml (comment-only lines that follow, indented past
    the key, continue it)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            if last is not None and line.startswith(" " * 8):
                comments[last] += " " + line.strip().lstrip("#").strip()
            continue
        match = COMMENT.match(line)
        if not match:
            last = None
            continue
        indent = len(match["indent"])
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, match["key"])]
        key, comment = ".".join(k for _, k in stack), comment_of(match["rest"])
        if comment:
            comments[key] = comment
        last = key if comment else None
    return comments


def type_name(annotation: Any) -> str:
    """A field's type as a reader wants it: `a | b` for a Literal, `list[str]`, `path`, a section's name."""
    from pydantic import BaseModel

    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None)) + (" or null" if type(None) in args
                                                                                  else "")
    if origin in (list, tuple, set):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}" if args else "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"section `{annotation.__name__}`"
    if isinstance(annotation, type):
        return {"Path": "path", "str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def cell(text: str) -> str:
    """Plain text that can sit in markdown (a table cell, a paragraph): `<name>` shown, not taken for HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def shown(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, Path):
        return f"`{value}`"
    text = repr(value) if isinstance(value, str) else str(value).replace("'", "")
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"`{text}`".replace("|", "\\|")


def yaml_value(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def section_rows(model: type, prefix: str, defaults: dict[str, Any], comments: dict[str, str]) -> list[str]:
    """One table row per leaf field of a section; nested sections are flattened to dotted keys."""
    from pydantic import BaseModel

    rows = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        key = f"{prefix}.{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += section_rows(annotation, key, defaults, comments)
            continue
        found, value = yaml_value(defaults, key)
        if not found:
            value = field.get_default(call_default_factory=True)
        about = cell(field.description or comments.get(key) or "")
        rows.append(f"| `{key}` | {type_name(annotation)} | {shown(value)} | {about} |")
    return rows


def configuration_page() -> str:
    from pydantic import BaseModel

    from reasonloop.settings import Settings
    from reasonloop.yaml_files import read_yaml

    defaults = read_yaml(ROOT / "configs" / "default.yaml")
    comments = yaml_comments(ROOT / "configs" / "default.yaml")
    lines = ["# Configuration reference", "",
             "Generated from the pydantic models at every docs build, so it cannot drift from the code. Each section "
             "lives beside the code that uses it (`reasonloop/<layer>/config.py`); `Settings` "
             "(`reasonloop/settings.py`) composes them. Defaults are those of `configs/default.yaml` (the model's own "
             "where the file leaves a key out); how the layers are merged is on [Configuration](../configuration.md).",
             ""]
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            found, value = yaml_value(defaults, name)
            key_type = type_name(annotation)
            if get_origin(annotation) is dict:  # a map keyed by your names (pricing)
                value_model = get_args(annotation)[1]
                lines += [f"## `{name}`", "", cell(comments.get(name, "")), "", f"A {key_type}; each entry:", "",
                          "| key | type | default | what it does |", "|---|---|---|---|",
                          *section_rows(value_model, f"{name}.<name>", {}, comments), "",
                          f"Default: {shown(value if found else field.get_default(call_default_factory=True))}", ""]
            else:
                lines += [f"## `{name}`", "", f"{key_type}, default {shown(value if found else field.default)}. "
                          f"{cell(field.description or comments.get(name, ''))}", ""]
            continue
        module = annotation.__module__.replace(".", "/") + ".py"
        doc = " ".join((annotation.__doc__ or "").split("\n\n")[0].split())
        lines += [f"## `{name}`", "", f"`{annotation.__name__}` in `{module}`. {cell(doc)} "
                  f"{cell(comments.get(name, ''))}".strip(),
                  "", "| key | type | default | what it does |", "|---|---|---|---|",
                  *section_rows(annotation, name, defaults, comments), ""]
        for sub, sub_field in annotation.model_fields.items():  # maps of sections keyed by your names
            if get_origin(sub_field.annotation) is dict:
                value_model = get_args(sub_field.annotation)[1]
                if isinstance(value_model, type) and issubclass(value_model, BaseModel):
                    lines += [f"Each entry of `{name}.{sub}`:", "", "| key | type | default | what it does |",
                              "|---|---|---|---|", *section_rows(value_model, f"{name}.{sub}.<name>", {}, comments),
                              ""]
    lines += ["Environment variables `REASONLOOP_<SECTION>__<KEY>` set any key (maps take one JSON value for the whole "
              "section, e.g. `REASONLOOP_QUALITY='{\"datasets\": {...}}'`).", ""]
    return "\n".join(lines)


# --- the CLI reference ----------------------------------------------------------------------------------------------

def command_lines(command: Any, path: str, ctx: Any) -> list[str]:
    """A command's help and a table of its arguments and options, then its subcommands' (duck-typed: Typer brings
    its own copy of click)."""
    lines = [f"## `{path}`", "", cell(" ".join((command.help or "").split())), ""]
    params = [p for p in command.params if p.name not in {"help", "install_completion", "show_completion"}]
    if params:
        lines += ["| argument / option | type | default | what it does |", "|---|---|---|---|"]
        for param in params:
            names = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts)) \
                if param.param_type_name == "option" else f"`{param.name.upper()}`"
            default = "required" if param.required else "" if param.default in (None, False) else shown(param.default)
            kind = param.display_type(ctx).strip("<>")
            lines.append(f"| {names} | {kind} | {default} | {cell(getattr(param, 'help', None) or '')} |")
        lines.append("")
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        lines += command_lines(sub, f"{path} {name}", ctx)
    return lines


def cli_page() -> str:
    import typer

    from reasonloop.cli import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    lines = ["# CLI reference", "", "Generated from the command definitions at every docs build. Every command takes "
             "the global options before it (`reasonloop --profile NAME -v COMMAND`). Exit codes: 0 done; 1 a run "
             "failed (bad input, a failed gate, a rejected candidate, ...); 2 invalid configuration or arguments; 3 a "
             "nightly eval finished with questions unanswered after their retries (Partial).", ""]
    lines += command_lines(group, "reasonloop", ctx)
    return "\n".join(lines)


def cli_commands() -> dict[str, set[str]]:
    """Each top-level command of the CLI and its subcommands (none for a plain command)."""
    import typer

    from reasonloop.cli import app

    group = typer.main.get_command(app)
    return {name: set(getattr(cmd, "commands", {})) for name, cmd in group.commands.items()}  # type: ignore[attr-defined]


# --- hooks ----------------------------------------------------------------------------------------------------------

def on_files(files: Files, config: Any) -> Files:
    for uri, content in ((CONFIG_PAGE, configuration_page()), (CLI_PAGE, cli_page())):
        files.append(File.generated(config, uri, content=content))
    return files


def stale_references(text: str, where: str) -> list[str]:
    """What `text` names that does not exist: project files (and `file.py::test` functions), make targets, CLI
    commands."""
    problems = []
    for path, function in PATH_REF.findall(text):
        target = ROOT / path
        if "<" in path or "*" in path:
            continue
        if not target.exists():
            problems.append(f"{where}: {path} does not exist")
        elif function and not re.search(rf"def {function}\(", target.read_text(encoding="utf-8")):
            problems.append(f"{where}: {path} has no {function}")
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    problems += [f"{where}: no make target '{t}'" for t in MAKE_REF.findall(text) if t not in targets]
    commands = cli_commands()
    for command, sub in CLI_REF.findall(text):
        if command not in commands:
            problems.append(f"{where}: no command `reasonloop {command}`")
        elif sub and commands[command] and sub not in commands[command]:
            problems.append(f"{where}: no command `reasonloop {command} {sub}`")
    return problems


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri in (CONFIG_PAGE, CLI_PAGE):  # generated from the code itself
        return markdown
    for problem in stale_references(markdown, page.file.src_uri):
        log.warning("stale reference: %s", problem)
    return markdown


CHECKED_OUTSIDE_DOCS = ("README.md", "data/README.md", "configs/default.yaml", "prefect.yaml", "pyproject.toml")


def on_post_build(config: Any) -> None:
    for name in CHECKED_OUTSIDE_DOCS:
        for problem in stale_references((ROOT / name).read_text(encoding="utf-8"), name):
            log.warning("stale reference: %s", problem)
