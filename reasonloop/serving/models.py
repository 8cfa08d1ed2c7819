"""What the endpoint takes and returns: the request and response bodies, the error body, and the record of one
answered request (what the spool holds and the exporter turns into an MLflow trace)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from reasonloop.schemas import AnswerRecord, MetadataValue, NonEmptyStr, Question, Record, RetrievedChunk

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w.:@/+-]+$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AskRequest(Body):
    question: NonEmptyStr
    session_id: Identifier | None = None
    user_id: Identifier | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)


class AskResponse(Body):
    trace_id: str = Field(description="this request's id: send it with feedback; tag `reasonloop.trace_id` of its "
                                      "MLflow trace")
    answer: str
    citations: list[str]
    confidence: float
    strategy: str
    route: str | None
    arm: Literal["production", "candidate"]
    model: str
    prompt_versions: dict[str, str] = Field(description="role -> name@vN of the templates that answered")
    index_version: str
    guardrails: list[str]
    latency_s: float


class FeedbackRequest(Body):
    trace_id: NonEmptyStr
    rating: Literal["up", "down"] | None = None
    corrected_answer: NonEmptyStr | None = None
    comment: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRequest:
        if self.rating is None and self.corrected_answer is None:
            raise ValueError("give a rating (up or down) and/or a corrected_answer")
        return self


class FeedbackResponse(Body):
    trace_id: str
    recorded: list[Literal["rating", "correction"]]


class Problem(Body):
    field: str
    problem: str


class ErrorBody(Body):
    type: str
    message: str
    fields: list[Problem] = Field(default_factory=list)


class LiveAnswer(Record):
    """One answered request, as acknowledged: what was asked, read and answered, by which arm and versions."""

    trace_id: str
    received_ns: int
    question: Question
    retrieved: list[RetrievedChunk]
    answer: AnswerRecord
    arm: Literal["production", "candidate"]
    canary_id: str | None = None
    index_version: str
    prompt_versions: dict[str, str]
    session_id: str | None = None
    user_id: str | None = None


class LiveFeedback(Record):
    """One piece of feedback on an answered request, as acknowledged."""

    trace_id: str
    received_ns: int
    rating: Literal["up", "down"] | None = None
    corrected_answer: str | None = None
    comment: str | None = None
    user_id: str | None = None
