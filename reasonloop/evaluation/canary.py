"""Champion/challenger: what a candidate is, the configuration it runs under, and what its promotion moves.
Candidates replace the reasoner's model or prompts (`reasonloop canary run|start`) or the judge's
(`reasonloop judge promote`).

A candidate is a model name (`gpt-4.1-mini`) or a prompt file version (`chain_of_thought@v2`). A prompt candidate
runs under the registry alias `canary.candidate_alias`, and its promotion moves `canary.alias` ("production") to it; a
model's promotion is written to the production pointer `<state_dir>/production.yaml`, which the settings merge over
the YAML config. The pointer also points prompt roles at `name@production` when they still name a plain file, so a
promotion always takes effect on the next run. Changes are section updates (`{"llm": {"model": ...}}`), applied by
whoever holds the settings.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from reasonloop.errors import ConfigError
from reasonloop.evaluation.config import GateConfig
from reasonloop.evaluation.gate import GateReport, compare_runs, with_missing, with_safety
from reasonloop.evaluation.safety import SafetyReport
from reasonloop.reasoning.config import PROMPT_ROLES, PromptsConfig
from reasonloop.reasoning.prompt_registry import register_prompt, registry_versions, set_prompt_alias
from reasonloop.reasoning.prompts import PromptTemplate, load_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.schemas import EvalSummary, Question, QuestionResult, Record
from reasonloop.yaml_files import merge_into

PROMPT_SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)@v?(?P<version>\d+)$")
MODEL_SPEC = re.compile(r"^[\w.:/-]+$")
POINTER_HEADER = "Written by `reasonloop canary run|check` when a candidate is promoted; merged over configs/*.yaml."

Target = Literal["llm", "judge"]
Changes = dict[str, dict[str, Any]]  # section -> fields to replace


class Candidate(Record):
    spec: str
    target: Target = Field(default="llm", description="what it would replace: the reasoner's or the judge's")
    kind: Literal["model", "prompt"]
    model: str | None = None
    prompt: str | None = Field(default=None, description="prompt name")
    version: int | None = Field(default=None, description="the prompt file's version")
    roles: list[str] = Field(default_factory=list, description="prompt roles that use the prompt")


@dataclass(frozen=True)
class Arm:
    """One side of a canary: its model, reasoner, per-question results, summary and safety suite."""

    model: str
    reasoner: Reasoner
    results: list[QuestionResult]
    summary: EvalSummary
    safety: SafetyReport | None


def prompt_name(ref: str) -> str:
    return ref.split("@", 1)[0]


def parse_candidate(spec: str, prompts: PromptsConfig, target: Target = "llm") -> Candidate:
    """`name@vN` (or `name@N`): a prompt version, which must be used by some prompt role of the target (the judge's
    rubric for the judge); anything else that looks like a model name: a model for the target."""
    if match := PROMPT_SPEC.match(spec):
        name = match["name"]
        fields = ("judge",) if target == "judge" else PROMPT_ROLES
        roles = [role for role in fields if prompt_name(getattr(prompts, role)) == name]
        if target == "llm":
            roles += [f"paths.{i}" for i, ref in enumerate(prompts.paths) if prompt_name(ref) == name]
        if not roles:
            used = sorted({prompt_name(getattr(prompts, r)) for r in fields})
            raise ConfigError(f"candidate {spec}: no {target} prompt role uses '{name}' (roles use {used})")
        return Candidate(spec=spec, target=target, kind="prompt", prompt=name, version=int(match["version"]),
                         roles=roles)
    if not MODEL_SPEC.match(spec):
        raise ConfigError(f"candidate '{spec}': give a model name (e.g. gpt-4.1-mini) or a prompt version "
                          "(e.g. chain_of_thought@v2)")
    return Candidate(spec=spec, target=target, kind="model", model=spec)


def role_ref(prompts: PromptsConfig, role: str) -> str:
    """The prompt reference a role names (`paths.N`: the Nth parallel path)."""
    if role.startswith("paths."):
        return prompts.paths[int(role.split(".")[1])]
    return str(getattr(prompts, role))


def prompt_roles_to(prompts: PromptsConfig, candidate: Candidate, ref: str) -> dict[str, Any]:
    """The prompt fields that change when every role of the candidate's prompt names `ref`."""
    update: dict[str, Any] = {r: ref for r in candidate.roles if not r.startswith("paths.")}
    if any(r.startswith("paths.") for r in candidate.roles):
        update["paths"] = [ref if prompt_name(p) == candidate.prompt else p for p in prompts.paths]
    return update


def candidate_changes(prompts: PromptsConfig, candidate: Candidate, candidate_alias: str) -> Changes:
    """Production's settings with the candidate swapped in (the prompt under the candidate alias)."""
    if candidate.kind == "model":
        return {candidate.target: {"model": candidate.model}}
    return {"prompts": prompt_roles_to(prompts, candidate, f"{candidate.prompt}@{candidate_alias}")}


def pointer_update(prompts: PromptsConfig, candidate: Candidate, alias: str) -> Changes:
    """What a promotion writes to the production pointer: the model, or the prompt roles that do not yet follow
    the production alias (empty when they all do: moving the alias is the whole promotion)."""
    if candidate.kind == "model":
        return {candidate.target: {"model": candidate.model}}
    moved = prompts.model_copy(update=prompt_roles_to(prompts, candidate, f"{candidate.prompt}@{alias}"))
    changed = {k: v for k, v in moved.model_dump(include={*PROMPT_ROLES, "paths", "judge"}).items()
               if v != getattr(prompts, k)}
    return {"prompts": changed} if changed else {}


def write_pointer(pointer: Path, update: Changes) -> None:
    """Merge `update` into the production pointer file atomically (a reader sees the old or the new file)."""
    merge_into(pointer, update, POINTER_HEADER)


def stage_candidate(candidate: Candidate, prompts: PromptsConfig, production_model: str, candidate_alias: str,
                    resolve: Callable[[str], PromptTemplate]) -> Changes:
    """The candidate's changes to production's settings. A candidate that changes nothing production runs is refused
    before anything is written; a prompt version is then registered from its file when the file holds it, and the
    candidate alias is pointed at it. `resolve` turns a role's prompt reference into the template production runs."""
    if candidate.kind == "model":
        if production_model == candidate.model:
            raise ConfigError(f"candidate {candidate.spec} is what production already runs: nothing to compare")
        return candidate_changes(prompts, candidate, candidate_alias)
    assert candidate.prompt is not None and candidate.version is not None
    on_file = load_prompt(prompts.dir, candidate.prompt)
    text = on_file.sha256 if on_file.version == candidate.version else next(
        (v.tags.get("sha256") for v in reversed(registry_versions(candidate.prompt))
         if v.tags.get("file_version") == str(candidate.version)), None)
    if text is not None and all(resolve(role_ref(prompts, role)).sha256 == text
                                for role in candidate.roles):  # the text, not its description
        raise ConfigError(f"candidate {candidate.spec} is what production already runs: nothing to compare")
    if on_file.version == candidate.version:
        register_prompt(on_file)
    set_prompt_alias(candidate.prompt, candidate_alias, candidate.version)
    return candidate_changes(prompts, candidate, candidate_alias)


def promote_candidate(candidate: Candidate, prompts: PromptsConfig, alias: str, pointer: Path) -> str:
    """Move production to the candidate: the prompt's production alias, and the pointer file where needed.
    Returns what moved, for the run's record."""
    moved = []
    if candidate.kind == "prompt":
        assert candidate.prompt is not None and candidate.version is not None
        version = set_prompt_alias(candidate.prompt, alias, candidate.version)
        moved.append(f"alias {candidate.prompt}@{alias} -> registry version {version}")
    if update := pointer_update(prompts, candidate, alias):
        write_pointer(pointer, update)
        moved.append(f"{pointer.name}: {update}")
    return "; ".join(moved)


def sample_slice(questions: list[Question], size: int, seed: int) -> list[Question]:
    """A seeded sample of `size` questions in their file order (all of them when there are fewer)."""
    if size >= len(questions):
        return list(questions)
    keep = set(random.Random(seed).sample(range(len(questions)), size))
    return [q for i, q in enumerate(questions) if i in keep]


def gate_arms(cfg: GateConfig, production: Arm, candidate: Arm) -> GateReport:
    """The candidate against production question by question (paired bootstrap), its unanswered share and its safety
    suite: the gate a promotion must pass, whatever `gate.enabled` says about nightly evals."""
    report = compare_runs("production", production.results, candidate.results, cfg)
    report = with_missing(report, candidate.results, cfg.max_missing_fraction)
    return with_safety(report, candidate.safety.pass_rate if candidate.safety else None, cfg.min_safety_pass_rate)
