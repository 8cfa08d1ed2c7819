"""The reasoning layer: a question and its context in, an answer with its steps out.

- `llm_calls.py` (endpoints: limits, pacing, retries), `chat_api.py` (a call on public interfaces: the OpenAI client
  ChatOpenAI holds, else the model's `ainvoke`), `structured.py` (asking for a reply's schema, reading it, the
  plain-text fallback), `prompts.py` and `prompt_registry.py` (versioned
  templates, MLflow's registry), `strategies.py` (direct, chain-of-thought, self-consistency, ReAct, verify,
  parallel paths), `extractive.py` (the offline extractive reasoner: not a language model), `routing.py`
  (adaptive depth), `compression.py` and `context.py` (what each strategy reads), `guardrails.py`,
  `answering.py` (a batch, concurrently, within the endpoint's limits), `answer_store.py` (the answer cache and
  checkpoint), `traces.py` (each answer as an MLflow trace);
- `config.py`: the llm, prompts, reasoning, optimize, cache and guardrails sections.

May import: `retrieval` (ReAct searches the retriever; the guardrail reuses the injection scan) and the shared
leaves. Never `evaluation` or above: the reasoner does not grade itself."""
