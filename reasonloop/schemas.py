"""Typed records that cross every boundary: documents, chunks, questions, answers, verdicts, results."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
MetadataValue = str | int | float | bool


def content_hash(text: str) -> str:
    """sha256 of UTF-8 text: the identity of a document's or chunk's content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Record(BaseModel):
    """Strict base: unknown fields are errors, so typos in input files surface at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(BaseModel):
    """Base of every configuration section: an unknown key is an error naming it."""

    model_config = ConfigDict(extra="forbid")


class Document(Record):
    id: NonEmptyStr
    text: str
    title: str = ""
    source: str = Field(description="path of the file the document came from, relative to the corpus root")
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    content_hash: str


class Reject(Record):
    """One quarantined input: where it is (file, line) and why it was refused."""

    source: str
    line: int | None = None
    reason: str

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source


class LoadedCorpus(Record):
    documents: list[Document]
    rejects: list[Reject] = Field(default_factory=list)
    flagged: list[str] = Field(default_factory=list, description="ids of documents that look like prompt injection")


class Chunk(Record):
    id: str
    doc_id: str
    text: str
    title: str = ""
    source: str
    position: int = Field(ge=0, description="index of the chunk within its document")
    start: int = Field(ge=0, description="character offset of the chunk in the document text")
    end: int = Field(ge=0)
    content_hash: str
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class Question(Record):
    id: NonEmptyStr
    question: NonEmptyStr
    reference: NonEmptyStr | None = Field(default=None, description="reference answer used by the judge; None for a "
                                        "live question (judged without one: grounding, relevance, reasoning)")
    gold_doc_ids: list[str] = Field(default_factory=list)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class RetrievedChunk(Record):
    chunk_id: str
    doc_id: str
    text: str
    title: str = ""
    score: float = Field(description="the ranking score: cosine (dense), BM25 (bm25) or fused RRF (hybrid)")
    rank: int = Field(ge=1)
    dense_score: float | None = Field(default=None, description="cosine similarity, when dense retrieval saw it")
    bm25_score: float | None = None


class ReasoningSteps(BaseModel):
    """The chain-of-thought structure: problem -> context -> steps -> verification."""

    model_config = ConfigDict(extra="ignore")

    problem: str = ""
    context: str = ""
    steps: list[str] = Field(default_factory=list)
    verification: str = ""


class ModelAnswer(BaseModel):
    """What the reasoning prompt asks the model to return (its JSON output schema)."""

    model_config = ConfigDict(extra="ignore")

    reasoning: ReasoningSteps = Field(default_factory=ReasoningSteps)
    answer: NonEmptyStr
    citations: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class StepTrace(Record):
    """One call a strategy made, in order: a model call (its prompt, the rendered messages, the raw reply, usage) or
    a tool call (ReAct's search: the query in, the chunk ids and scores out)."""

    name: str = Field(description="answer | sample:N | search | check | revise | path:NAME | synthesize | step:N")
    kind: Literal["llm", "tool"] = "llm"
    prompt: str = Field(default="", description="name@version of the template (model calls)")
    started_ns: int = Field(description="wall clock when the request left (after any wait for the endpoint's "
                                        "limits), ns since the epoch")
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    input: str = Field(default="", description="the rendered messages (model calls) or the query (tool calls)")
    output: str = Field(default="", description="the raw reply, or the retrieved chunk ids and scores")
    error: str | None = None
    attempts: int = Field(default=1, description="requests made for this call: 1 + its retries")


class LabeledPair(BaseModel):
    """A (document, summary) pair with a human consistency label: judge calibration data (SummEdits' layout;
    fields beyond these are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: NonEmptyStr
    domain: str = ""
    doc: NonEmptyStr
    summary: NonEmptyStr
    label: Literal[0, 1] = Field(description="1 = factually consistent with the document, 0 = not")


class AnswerRecord(Record):
    """One question's answer with its costs; `error` is set (and `answer` empty) when it failed."""

    question_id: str
    model: str = ""
    prompt: str = Field(default="", description="name@version of the template that produced it")
    answer: str = ""
    reasoning: ReasoningSteps = Field(default_factory=ReasoningSteps)
    citations: list[str] = Field(default_factory=list)
    confidence: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    raw_output: str = ""
    error: str | None = None
    cache_hit: bool = Field(default=False, description="reused from the answer store: no call, no cost this run")
    strategy: str = "chain_of_thought"
    route: str | None = Field(default=None, description="adaptive depth: simple | moderate | complex")
    complexity: float | None = None
    samples: list[str] = Field(default_factory=list, description="self-consistency: every sample's answer")
    n_calls: int = Field(default=1, description="model calls made for this answer")
    steps: list[StepTrace] = Field(default_factory=list, description="every call the strategy made, in order")
    verified: bool | None = Field(default=None, description="verify strategy: did the self-check pass (first check)")
    revised: bool = Field(default=False, description="verify strategy: the answer is the one revision")
    guardrails: list[str] = Field(default_factory=list, description="what the guardrails did to this answer")
    schema_valid: bool | None = Field(default=None, description="every reply matched its prompt's output schema "
                                      "(None: no reply arrived)")
    parse_fallback: bool = Field(default=False, description="the answer is a reply's plain text: it did not match the "
                                 "schema even after a repair turn (judged as usual, sent to review)")
    searched: list[RetrievedChunk] = Field(default_factory=list,
                                           description="ReAct: chunks its own searches returned (judged as context)")

    def evidence(self, context: list[RetrievedChunk]) -> list[RetrievedChunk]:
        """What the answer may rest on: the retrieved context and the chunks its own searches returned."""
        seen = {c.chunk_id for c in context}
        return context + [c for c in self.searched if c.chunk_id not in seen]


class Verdict(Record):
    """A judge's verdict on one answer; `judge_error` is set when the judge itself failed."""

    correct: bool = False
    correctness: float = Field(default=0.0, ge=0.0, le=1.0)
    exact_match: bool = False
    token_f1: float = 0.0
    semantic_similarity: float | None = None
    grounded_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    hallucinated: bool = False
    unsupported_claims: list[str] = Field(default_factory=list)
    reason: str = ""
    judge_error: str | None = None
    votes: int = Field(default=1, description="judge calls asked for this verdict")
    agreement: float | None = Field(default=None, description="share of valid votes agreeing with the majority")
    score_spread: float | None = Field(default=None, description="max - min of the votes' scores")
    flaky: bool = Field(default=False, description="the votes split on correct/incorrect")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0, description="how sure the judge is of `correct`: "
                                     "votes' agreement x distance of the score from undecided (heuristic: from "
                                     "its threshold)")
    escalated: bool = Field(default=False, description="re-judged by the stronger judge (judge.escalate)")
    judge_tokens_in: int = 0
    judge_tokens_out: int = 0
    judge_cost_usd: float = 0.0
    reused: bool = Field(default=False, description="taken from the verdict store: no judge call this run")
    referenced: bool = Field(default=True, description="judged against a reference answer; False for a live "
                                                       "question, whose correctness fields are not measured")
    relevance: float | None = Field(default=None, ge=0.0, le=1.0, description="does the answer address the question")
    consistency: float | None = Field(default=None, ge=0.0, le=1.0, description="reasoning: logical consistency")
    completeness: float | None = Field(default=None, ge=0.0, le=1.0, description="reasoning: every step present")
    clarity: float | None = Field(default=None, ge=0.0, le=1.0, description="reasoning: clear, not repetitive")

    @property
    def reasoning_quality(self) -> float | None:
        """The mean of consistency, completeness and clarity; None when the answer had no reasoning to score."""
        parts = [self.consistency, self.completeness, self.clarity]
        return None if any(p is None for p in parts) else sum(parts) / 3  # type: ignore[misc]


class QuestionResult(Record):
    """One row of the nightly eval's per-question table."""

    question: Question
    retrieved: list[RetrievedChunk]
    answer: AnswerRecord
    verdict: Verdict | None = None
    recall_at_k: float | None = Field(default=None, description="context recall: share of gold documents retrieved")
    context_precision: float | None = Field(default=None, description="average precision of the retrieved chunks "
                                            "against the gold documents")


class EvalSummary(Record):
    n_questions: int
    n_failed: int
    n_judge_errors: int
    accuracy: float | None = None
    grounding_rate: float | None = None
    hallucination_rate: float | None = None
    recall_at_k: float | None = None
    context_precision: float | None = None
    answer_relevance: float | None = None
    reasoning_quality: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    context_chars_mean: float | None = Field(default=None, description="characters of context an answer rested on "
                                             "(retrieved and searched chunks), mean over the answered questions")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_per_query_usd: float | None = None
    cache_hit_rate: float | None = None
    route_simple: int | None = None  # adaptive depth only, like the savings below
    route_moderate: int | None = None
    route_complex: int | None = None
    tokens_saved_vs_complex: int | None = None
    cost_saved_vs_complex_usd: float | None = None
    n_verify_failed: int = 0
    n_revised: int = 0
    error_rate: float | None = Field(default=None, description="share of questions failed or with unsupported claims")
    judge_agreement: float | None = Field(default=None, description="mean share of judge votes with the majority")
    judge_score_spread: float | None = Field(default=None, description="mean max - min of the judge votes' scores")
    n_flaky: int = Field(default=0, description="verdicts whose judge votes split on correct/incorrect")
    n_escalated: int = Field(default=0, description="verdicts the stronger judge re-made (judge.escalate)")
    judge_tokens: int = Field(default=0, description="judge tokens (in + out) spent this run")
    judge_cost_usd: float = Field(default=0.0, description="judge spend this run (reused verdicts cost nothing)")
    schema_validity: float | None = Field(default=None, description="share of answers whose every reply matched "
                                          "its prompt's output schema (prompt consistency)")
    parse_fallback_rate: float | None = Field(default=None, description="share of answers kept as plain text after "
                                              "their reply missed the schema twice")
    failure_causes: list[str] = Field(default_factory=list, description="why questions failed, most common first, "
                                      "as '<count> x <cause>' (the full list: eval/failed.json)")
    efficiency_j: float | None = Field(default=None, description="J = (accuracy - alpha * error_rate) / C")
    efficiency_cost_unit: str = Field(default="", description="C: usd_per_query when priced, else ktokens_per_query")
    intervals: dict[str, tuple[float, float]] = Field(default_factory=dict,
                                                      description="bootstrap 95% interval of each per-question mean")


class RetrievalQuality(Record):
    """Document-level retrieval metrics of one labeled question set (None: no labeled questions)."""

    dataset: str
    n_questions: int
    recall_at_1: float | None = None
    recall_at_5: float | None = None
    recall_at_10: float | None = None
    mrr_at_10: float | None = None
    ndcg_at_10: float | None = None

    def metrics(self) -> dict[str, float]:
        values = self.model_dump(exclude={"dataset", "n_questions"})
        return {f"{self.dataset}.{k}": v for k, v in values.items() if v is not None}


class FlowReport(Record):
    """What a flow returns and the CLI prints: the MLflow run it wrote and its headline figures."""

    flow: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    metrics: dict[str, float]
    rows: dict[str, str] = Field(default_factory=dict, description="headline figures for people (CLI, Prefect)")


class LiveRecord(Record):
    """One trace of live traffic: its question and answer as a result, and the users' feedback on it."""

    result: QuestionResult
    mlflow_trace_id: str
    timestamp_ms: int
    arm: str = "production"
    source: str = "app"  # "api" for the served endpoint's own traces
    session_id: str | None = None
    user_id: str | None = None
    rating: bool | None = None  # thumbs up (True) or down (False)
    correction: str | None = None
    comment: str | None = None


class LiveWindow(Record):
    since_ms: int
    until_ms: int
    experiments: list[str]
    records: list[LiveRecord]
    skipped: int = 0  # traces with no recognisable question or answer
