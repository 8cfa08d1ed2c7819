"""Champion/challenger: what a candidate is, the settings it runs under, and the production pointer a promotion
moves. Candidates replace the reasoner's model or prompts (`reasonloop canary`) or the judge's
(`reasonloop judge promote`).

A candidate is a model name (`gpt-4.1-mini`) or a prompt file version (`chain_of_thought@v2`). A prompt candidate
runs under the registry alias `canary.candidate_alias`, and its promotion moves `canary.alias` ("production") to
it; a model's promotion is written to the pointer file `<state_dir>/production.yaml`, which settings merge over the
YAML config (reasonloop/settings.py). The pointer also points prompt roles at `name@production` when they still
name a plain file, so a promotion always takes effect on the next run.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from typing import Any, Literal

import yaml
from pydantic import Field

from reasonloop.errors import ConfigError
from reasonloop.reasoning.config import PROMPT_ROLES
from reasonloop.schemas import Question, Record
from reasonloop.settings import Settings, deep_merge, read_yaml

PROMPT_SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)@v?(?P<version>\d+)$")
MODEL_SPEC = re.compile(r"^[\w.:/-]+$")


Target = Literal["llm", "judge"]


class Candidate(Record):
    spec: str
    target: Target = Field(default="llm", description="what it would replace: the reasoner's or the judge's")
    kind: Literal["model", "prompt"]
    model: str | None = None
    prompt: str | None = Field(default=None, description="prompt name")
    version: int | None = Field(default=None, description="the prompt file's version")
    roles: list[str] = Field(default_factory=list, description="prompt roles that use the prompt")


def prompt_name(ref: str) -> str:
    return ref.split("@", 1)[0]


def parse_candidate(spec: str, settings: Settings, target: Target = "llm") -> Candidate:
    """`name@vN` (or `name@N`): a prompt version, which must be used by some prompt role of the target (the judge's
    rubric for the judge); anything else that looks like a model name: a model for the target."""
    if match := PROMPT_SPEC.match(spec):
        name = match["name"]
        fields = ("judge",) if target == "judge" else PROMPT_ROLES
        roles = [role for role in fields if prompt_name(getattr(settings.prompts, role)) == name]
        if target == "llm":
            roles += [f"paths.{i}" for i, ref in enumerate(settings.prompts.paths) if prompt_name(ref) == name]
        if not roles:
            used = sorted({prompt_name(getattr(settings.prompts, r)) for r in fields})
            raise ConfigError(f"candidate {spec}: no {target} prompt role uses '{name}' (roles use {used})")
        return Candidate(spec=spec, target=target, kind="prompt", prompt=name, version=int(match["version"]),
                         roles=roles)
    if not MODEL_SPEC.match(spec):
        raise ConfigError(f"candidate '{spec}': give a model name (e.g. gpt-4.1-mini) or a prompt version "
                          "(e.g. chain_of_thought@v2)")
    return Candidate(spec=spec, target=target, kind="model", model=spec)


def role_ref(settings: Settings, role: str) -> str:
    """The prompt reference a role names (`paths.N`: the Nth parallel path)."""
    if role.startswith("paths."):
        return settings.prompts.paths[int(role.split(".")[1])]
    return str(getattr(settings.prompts, role))


def with_prompt_roles(settings: Settings, candidate: Candidate, ref: str) -> Settings:
    """The settings with every role of the candidate's prompt naming `ref`."""
    update: dict[str, Any] = {r: ref for r in candidate.roles if not r.startswith("paths.")}
    if any(r.startswith("paths.") for r in candidate.roles):
        update["paths"] = [ref if prompt_name(p) == candidate.prompt else p for p in settings.prompts.paths]
    return settings.model_copy(update={"prompts": settings.prompts.model_copy(update=update)})


def candidate_settings(settings: Settings, candidate: Candidate) -> Settings:
    """Production's settings with the candidate swapped in (the prompt under the candidate alias)."""
    if candidate.kind == "model":
        section = getattr(settings, candidate.target)
        return settings.model_copy(update={candidate.target: section.model_copy(update={"model": candidate.model})})
    return with_prompt_roles(settings, candidate, f"{candidate.prompt}@{settings.canary.candidate_alias}")


def pointer_update(settings: Settings, candidate: Candidate) -> dict[str, Any]:
    """What a promotion writes to the production pointer: the model, or the prompt roles that do not yet follow
    the production alias (empty when they all do: moving the alias is the whole promotion)."""
    if candidate.kind == "model":
        return {candidate.target: {"model": candidate.model}}
    production = f"{candidate.prompt}@{settings.canary.alias}"
    moved = with_prompt_roles(settings, candidate, production).prompts
    changed = {k: v for k, v in moved.model_dump(include={*PROMPT_ROLES, "paths", "judge"}).items()
               if v != getattr(settings.prompts, k)}
    return {"prompts": changed} if changed else {}


def write_pointer(settings: Settings, update: dict[str, Any]) -> None:
    """Merge `update` into the production pointer file atomically (a reader sees the old or the new file)."""
    path = settings.pointer_path
    merged = deep_merge(read_yaml(path), update)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".production-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Written by `reasonloop canary` when a candidate is promoted; merged over configs/*.yaml.\n")
        yaml.safe_dump(merged, handle, sort_keys=True)
    os.replace(tmp, path)


def sample_slice(questions: list[Question], size: int, seed: int) -> list[Question]:
    """A seeded sample of `size` questions in their file order (all of them when there are fewer)."""
    if size >= len(questions):
        return list(questions)
    keep = set(random.Random(seed).sample(range(len(questions)), size))
    return [q for i, q in enumerate(questions) if i in keep]
