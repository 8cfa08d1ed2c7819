"""The evaluation layer: answers in, verdicts and decisions out.

- `judges.py` (the offline heuristic judge, the LLM judge, escalation), `faithfulness.py`, `reasoning_quality.py`,
  `pairwise.py`, `judging.py` (a batch, with stored verdicts reused), `metrics.py`, `stats.py` (bootstrap
  intervals), `aggregate.py` (a run's summary and efficiency J), `retrieval_quality.py` (and the floors a new
  index version must meet), `gate.py` (the regression gate), `safety.py` (the adversarial suite), `review.py`
  (the human review queue), `calibration.py` (a judge against human labels), `canary.py` (champion/challenger),
  `live_canary.py` (a candidate on a share of live traffic: the sticky split, its state), `sequential.py`
  (confidence sequences, valid however often peeked at), `canary_decision.py` (the live canary's promote, keep or
  roll back), `live_checks.py` (reference-free checks of live answers: what users said, safety flags);
- `config.py`: the questions, live, eval, quality, judge, gate, review, safety and canary sections.

May import: `reasoning`, `retrieval` and the shared leaves. Never `feedback`, `monitoring` or above: a verdict is
data; recording it is monitoring's job."""
