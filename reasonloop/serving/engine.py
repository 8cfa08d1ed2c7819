"""What answers a live question: the serving index, the production arm and, while a live canary runs, the candidate
arm, built by the factory and rebuilt when what production serves moves (a new index version, a promotion, a canary
started or stopped). A question is answered exactly as the nightly eval answers one: the same retrieval, the same
strategies, guardrails and endpoint limits (the calls share the batch path's event loop and limits)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from reasonloop.evaluation.live_canary import LiveCanary, arm_of
from reasonloop.reasoning.answering import answer_one
from reasonloop.reasoning.config import OptimizeConfig, ReasoningConfig
from reasonloop.reasoning.context import retrieve_chunks
from reasonloop.reasoning.llm_calls import Endpoint, on_shared_loop
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.retrieval.retriever import ChunkRetriever
from reasonloop.schemas import Question
from reasonloop.serving.models import AskRequest, LiveAnswer

ArmName = Literal["production", "candidate"]


@dataclass(frozen=True)
class LiveArm:
    """One way of answering: a reasoner with its endpoint's limits, over the serving index."""

    reasoner: Reasoner
    endpoint: Endpoint
    retriever: ChunkRetriever
    reasoning: ReasoningConfig
    optimize: OptimizeConfig
    model: str
    index_version: str

    def prompt_versions(self) -> dict[str, str]:
        roles = {role: prompt.ref for role, prompt in self.reasoner.prompts.items()}
        return roles | {f"paths.{i}": prompt.ref for i, prompt in enumerate(self.reasoner.paths)}


@dataclass(frozen=True)
class LiveSetup:
    arms: dict[ArmName, LiveArm]
    canary: LiveCanary | None = None
    version: str = ""  # what it was built from: rebuilt when this changes


@dataclass
class Engine:
    """The live setup, rebuilt (off the event loop) when `version()` changes; looked at every `check_s`."""

    build: Callable[[], LiveSetup]
    version: Callable[[], str]
    check_s: float
    probe: Callable[[LiveSetup], list[str]]
    _setup: LiveSetup | None = None
    _checked: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current(self) -> LiveSetup | None:
        """The setup answering now (None before the first build); never builds."""
        return self._setup

    def setup(self) -> LiveSetup:
        now = time.monotonic()
        with self._lock:
            if self._setup is None or now - self._checked >= self.check_s:
                self._checked = now
                if self._setup is None or self.version() != self._setup.version:
                    self._setup = self.build()
            return self._setup

    async def ask(self, request: AskRequest, trace_id: str) -> LiveAnswer:
        received_ns = time.time_ns()
        setup = await asyncio.to_thread(self.setup)
        name = arm_of(setup.canary, request.session_id or request.user_id or trace_id)
        arm = setup.arms[name]
        question = Question(id=trace_id, question=request.question, metadata=request.metadata)
        [context] = await asyncio.to_thread(retrieve_chunks, [question], arm.retriever, arm.reasoning, arm.optimize)
        answer = await on_shared_loop(answer_one(arm.reasoner, arm.endpoint, question, context))
        return LiveAnswer(trace_id=trace_id, received_ns=received_ns, question=question, retrieved=context,
                          answer=answer, arm=name, canary_id=setup.canary.id if setup.canary else None,
                          index_version=arm.index_version, prompt_versions=arm.prompt_versions(),
                          session_id=request.session_id, user_id=request.user_id)

    def problems(self) -> list[str]:
        """Why the endpoint is not ready (empty: ready): the setup cannot be built, the index or a model is
        unreachable."""
        try:
            setup = self.setup()
        except Exception as exc:  # noqa: BLE001 - any failure to build is a readiness problem, reported
            return [f"cannot build the serving setup: {type(exc).__name__}: {exc}"]
        return self.probe(setup)
