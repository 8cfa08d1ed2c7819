"""The serving layer: the online half of the loop, a question-answering endpoint whose traffic and feedback feed
every flow.

- `app.py` (FastAPI: `/v1/ask`, `/v1/feedback`, `/healthz`, `/readyz`, `/metrics`), `engine.py` (the production arm
  and, during a live canary, the candidate arm, answering exactly as the nightly eval does), `spool.py` (what was
  acknowledged, durable before the response leaves), `export.py` (the spool into MLflow: traces and assessments),
  `metrics.py` (Prometheus), `models.py` (the request, response and record bodies);
- `config.py`: the serving section.

May import: `monitoring`, `evaluation`, `reasoning`, `retrieval` and the shared leaves. Never `ops`, the settings or
the factory: `reasonloop.providers.build_live_service` builds what it runs on.
"""
