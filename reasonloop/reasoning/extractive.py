"""The offline default "reasoner": deterministic extraction, not a language model.

It reads the rendered prompt (the `<question>` and `<chunk id="...">` blocks that every provider receives),
embeds the question and every context sentence with all-MiniLM-L6-v2, and answers by quoting the most similar
sentence(s), citing their chunks, in the same JSON structure an LLM is asked for. It generates nothing it did not
read, so its answers are grounded by construction; its accuracy is that of sentence retrieval. MLflow records it
as `llm.provider=extractive`.

It follows each strategy's protocol by the blocks of the prompt, deterministically:
- `<scratchpad>` (ReAct): search for the question while nothing has been observed, then finish from what was;
- `<answer_to_check>` (verify): supported when every sentence of the draft has a context sentence at cosine
  >= SUPPORT_COSINE;
- `<paths>` (synthesis): the answer most paths agree on, ties to the most confident.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import ModelAnswer
from reasonloop.text import normalize_answer, split_sentences

QUESTION = re.compile(r"<question>(.*?)</question>", re.S)
CHUNK = re.compile(r'<chunk id="([^"]+)"[^>]*>\n?(.*?)\n?</chunk>', re.S)
CHECKED = re.compile(r"<answer_to_check>(.*?)</answer_to_check>", re.S)
PATH = re.compile(r'<path name="[^"]+">\n?(.*?)\n?</path>', re.S)
STEPS_LEFT = re.compile(r"<steps_left>(\d+)</steps_left>")
SUPPORT_COSINE = 0.75


class ExtractiveChatModel(BaseChatModel):
    """A LangChain chat model whose "generation" is sentence selection by embedding similarity."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embedder: Embedder
    model_name: str = "extractive-minilm"
    max_sentences: int = 1

    @property
    def _llm_type(self) -> str:
        return "reasonloop-extractive"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_sentences": self.max_sentences,
                "encoder_sha256": self.embedder.weights_sha256}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.respond(messages))])

    def respond(self, messages: list[BaseMessage]) -> AIMessage:
        """The reply with its token usage: what `invoke` returns, without LangChain's run machinery around it
        (the batch path calls this directly, as it sends ChatOpenAI's requests through its client)."""
        prompt = "\n".join(str(m.content) for m in messages)
        user = str(messages[-1].content)
        output = json.dumps(self.answer(user), ensure_ascii=False)
        usage = {"input_tokens": self.embedder.count_tokens(prompt),
                 "output_tokens": self.embedder.count_tokens(output)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return AIMessage(content=output, usage_metadata=usage,  # type: ignore[arg-type]
                         response_metadata={"model_name": self.model_name})

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        # CPU-bound and deterministic: run inline rather than in a thread pool, so the measured latency is the
        # work itself and not a queue behind other threads on the same cores.
        return self._generate(messages, stop=stop, **kwargs)

    def answer(self, user_prompt: str) -> dict[str, Any]:
        """The JSON reply the prompt's protocol asks for."""
        match = QUESTION.search(user_prompt)
        question = match.group(1).strip() if match else user_prompt.strip()
        sentences = [(cid, s) for cid, text in CHUNK.findall(user_prompt) for s in split_sentences(text)]
        if "<paths>" in user_prompt:
            return synthesize(PATH.findall(user_prompt))
        checked = CHECKED.search(user_prompt)
        if checked:
            return self.check(checked.group(1), [s for _, s in sentences])
        if "<scratchpad>" in user_prompt:
            steps_left = STEPS_LEFT.search(user_prompt)
            if not sentences and (steps_left is None or int(steps_left.group(1)) > 1):
                return {"thought": "nothing observed yet: search for the question", "action": "search",
                        "query": question}
            return {**self.extract(question, sentences), "thought": "answer from the observations",
                    "action": "finish"}
        return self.extract(question, sentences)

    def check(self, draft: str, context: list[str]) -> dict[str, Any]:
        """Self-check: which draft sentences no context sentence supports."""
        claims = split_sentences(draft)
        if not claims or not context:
            return {"supported": False, "problems": ["no context to check the draft against"]}
        vectors = self.embedder.embed(claims + context)
        support = (vectors[: len(claims)] @ vectors[len(claims):].T).max(axis=1)
        problems = [f"not in the context: {c}" for c, best in zip(claims, support, strict=True)
                    if best < SUPPORT_COSINE]
        return {"supported": not problems, "problems": problems}

    def extract(self, question: str, sentences: list[tuple[str, str]]) -> dict[str, Any]:
        """The chain-of-thought JSON: the most similar sentence(s) to the question, quoted."""
        if not sentences:
            return {"reasoning": {"problem": question, "context": "no context was retrieved",
                                  "steps": ["nothing to select from"], "verification": "no supporting text"},
                    "answer": "The context does not contain the answer.", "citations": [], "confidence": 0.0}
        vectors = self.embedder.embed([question] + [s for _, s in sentences])
        scores = vectors[1:] @ vectors[0]
        order = np.argsort(-scores, kind="stable")[: self.max_sentences]
        best = [(sentences[i][0], sentences[i][1], float(scores[i])) for i in sorted(order)]
        top = float(scores[order[0]])
        cited = list(dict.fromkeys(cid for cid, _, _ in best))
        steps = [f"sentence from {cid} has cosine similarity {score:.3f} to the question" for cid, _, score in best]
        return {
            "reasoning": {
                "problem": f"Find the context sentence that answers: {question}",
                "context": f"{len(sentences)} sentences from {len({c for c, _ in sentences})} chunks",
                "steps": steps,
                "verification": f"the answer is quoted verbatim from {', '.join(cited)}",
            },
            "answer": " ".join(s for _, s, _ in best),
            "citations": cited,
            "confidence": round(max(0.0, min(1.0, top)), 4),
        }


def synthesize(paths: list[str]) -> dict[str, Any]:
    """The paths' answer with the most votes (normalized), ties to the higher confidence; its confidence scaled by
    the share of paths that agree."""
    answers = []
    for block in paths:
        try:
            answers.append(ModelAnswer.model_validate_json(html.unescape(block)))
        except ValueError:
            continue
    if not answers:
        return {"answer": "The paths gave no answer.", "citations": [], "confidence": 0.0}
    votes = Counter(normalize_answer(a.answer) for a in answers)
    best = max(answers, key=lambda a: (votes[normalize_answer(a.answer)], a.confidence))
    agree = votes[normalize_answer(best.answer)]
    return {"reasoning": {"problem": "synthesize the paths", "context": f"{len(answers)} paths",
                          "steps": [f"{agree} of {len(answers)} paths agree"],
                          "verification": "the answer is one of the paths' answers"},
            "answer": best.answer, "citations": best.citations,
            "confidence": round(best.confidence * agree / len(answers), 4)}
