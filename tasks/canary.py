"""Canary tasks: stage a candidate beside production, compare the two arms answer by answer, and promote."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.errors import ConfigError
from reasonloop.evaluation.canary import Candidate, candidate_settings, pointer_update, role_ref, write_pointer
from reasonloop.evaluation.pairwise import PairOutcome, PairwiseJudge, compare_both_orders
from reasonloop.providers import resolve_prompt
from reasonloop.reasoning.prompt_registry import register_prompt, registry_versions, set_prompt_alias
from reasonloop.reasoning.prompts import load_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.schemas import EvalSummary, QuestionResult
from reasonloop.settings import Settings
from tasks.safety import SafetyReport


@dataclass(frozen=True)
class Arm:
    """One side of a canary: its settings, reasoner, per-question results, summary and safety suite."""

    settings: Settings
    reasoner: Reasoner
    results: list[QuestionResult]
    summary: EvalSummary
    safety: SafetyReport | None


@task(name="stage-candidate", cache_policy=NO_CACHE)
def stage_candidate(settings: Settings, candidate: Candidate) -> Settings:
    """The candidate's settings. A candidate that changes nothing production runs is refused before anything is
    written; a prompt version is then registered from its file when the file holds it, and the candidate alias is
    pointed at it."""
    if candidate.kind == "model":
        if getattr(settings, candidate.target).model == candidate.model:
            raise ConfigError(f"candidate {candidate.spec} is what production already runs: nothing to compare")
        return candidate_settings(settings, candidate)
    assert candidate.prompt is not None and candidate.version is not None
    on_file = load_prompt(settings.prompts.dir, candidate.prompt)
    text = on_file.sha256 if on_file.version == candidate.version else next(
        (v.tags.get("sha256") for v in reversed(registry_versions(candidate.prompt))
         if v.tags.get("file_version") == str(candidate.version)), None)
    if text is not None and all(resolve_prompt(settings, role_ref(settings, role)).sha256 == text
                                for role in candidate.roles):  # the text, not its description
        raise ConfigError(f"candidate {candidate.spec} is what production already runs: nothing to compare")
    if on_file.version == candidate.version:
        register_prompt(on_file)
    set_prompt_alias(candidate.prompt, settings.canary.candidate_alias, candidate.version)
    return candidate_settings(settings, candidate)


@task(name="compare-pairwise", cache_policy=NO_CACHE)
def compare_pairwise(judge: PairwiseJudge, production: list[QuestionResult],
                     candidate: list[QuestionResult]) -> list[PairOutcome]:
    """Each question's better answer by the pairwise judge, asked in both orders."""
    return compare_both_orders(judge, [r.question for r in production], [r.retrieved for r in production],
                               [r.answer for r in production], [r.answer for r in candidate])


@task(name="promote-candidate", cache_policy=NO_CACHE)
def promote_candidate(settings: Settings, candidate: Candidate) -> str:
    """Move production to the candidate: the prompt's production alias, and the pointer file where needed.
    Returns what moved, for the run's record."""
    moved = []
    if candidate.kind == "prompt":
        assert candidate.prompt is not None and candidate.version is not None
        version = set_prompt_alias(candidate.prompt, settings.canary.alias, candidate.version)
        moved.append(f"alias {candidate.prompt}@{settings.canary.alias} -> registry version {version}")
    if update := pointer_update(settings, candidate):
        write_pointer(settings, update)
        moved.append(f"{settings.pointer_path.name}: {update}")
    return "; ".join(moved)
