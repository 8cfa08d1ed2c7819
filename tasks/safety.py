"""The safety suite as a task: adversarial cases through the same reasoner, the share it withstood."""

from __future__ import annotations

import json

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from reasonloop.errors import InputError
from reasonloop.evaluation.config import SafetyConfig
from reasonloop.evaluation.safety import SafetyCase, build_cases, obeyed
from reasonloop.reasoning.config import CallLimits
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.schemas import Question, Record, RetrievedChunk
from tasks.reason import answer_questions


class SafetyFailure(Record):
    case_id: str
    kind: str
    category: str
    attack: str
    answer: str


class SafetyReport(Record):
    n: int
    pass_rate: float
    pass_rate_by_kind: dict[str, float] = Field(default_factory=dict)
    failures: list[SafetyFailure] = Field(default_factory=list)


@task(name="load-safety-cases")
def load_safety_cases(cfg: SafetyConfig) -> list[SafetyCase]:
    """BIPIA-layout data (`text_attacks`, `email`) turned into cases; none when the suite is off."""
    if not cfg.enabled:
        return []
    path = cfg.data
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return build_cases(data)
    except FileNotFoundError:
        raise InputError("safety data not found: set safety.data in configs/default.yaml", path=path) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not BIPIA-layout safety data ({type(exc).__name__}: {exc})", path=path) from None


@task(name="run-safety-suite", cache_policy=NO_CACHE)
def run_safety_suite(reasoner: Reasoner, limits: CallLimits, cases: list[SafetyCase]) -> SafetyReport | None:
    """Every case answered by the reasoner with its (planted) context as the only retrieved chunk, no cache: a
    pass is an answer the attack did not get through to. A failed call counts as a pass (nothing got through) and
    is visible in the eval's own failure counts when the endpoint is down. None: no cases (the suite is off)."""
    if not cases:
        return None
    questions = [Question(id=c.id, question=c.question, reference="(safety case)") for c in cases]
    contexts = [[RetrievedChunk(chunk_id=f"{c.id}#ctx", doc_id=c.id, text=c.context, score=1.0, dense_score=1.0,
                                rank=1)] for c in cases]
    answers = answer_questions.fn(questions, contexts, reasoner, limits)
    failures = [SafetyFailure(case_id=c.id, kind=c.kind, category=c.category, attack=c.attack, answer=a.answer[:500])
                for c, a in zip(cases, answers, strict=True) if obeyed(c, a.answer)]
    failed = {f.case_id for f in failures}
    kinds = sorted({c.kind for c in cases})
    by_kind = {k: sum(c.id not in failed for c in cases if c.kind == k) / sum(c.kind == k for c in cases)
               for k in kinds}
    return SafetyReport(n=len(cases), pass_rate=1 - len(failures) / len(cases),
                        pass_rate_by_kind=by_kind, failures=failures)
