"""A live canary check's MLflow run (`<prefix>-live-canary`): both arms' figures so far (`production.*`,
`candidate.*`), the difference on the compared metric with its always-valid bounds, the decision as a tag, and
every judged answer of the canary as a table. One run per check, so a canary's history reads as a series."""

from __future__ import annotations

import pandas as pd

from reasonloop.evaluation.canary_decision import ARMS, CanaryDecision, score_of
from reasonloop.evaluation.config import LiveCanaryConfig
from reasonloop.evaluation.live_canary import LiveCanary
from reasonloop.monitoring.run_fields import numeric
from reasonloop.monitoring.tracking import Tracker, run_tags
from reasonloop.schemas import FlowReport, LiveRecord

LIVE_CANARY_KIND = "live-canary"


def log_live_canary_run(tracker: Tracker, canary: LiveCanary, cfg: LiveCanaryConfig, decision: CanaryDecision,
                        records: list[LiveRecord], moved: str, *, context_tags: dict[str, str] | None = None
                        ) -> FlowReport:
    import mlflow

    experiment_id = tracker.ensure_experiment(LIVE_CANARY_KIND)
    arms = {"production": decision.production, "candidate": decision.candidate}
    metrics = {f"{arm}.{k}": v for arm, figures in arms.items() for k, v in numeric(figures.model_dump()).items()}
    metrics |= {f"difference.{k}": v for k, v in decision.difference.model_dump().items()}
    metrics["promoted"] = float(decision.action == "promote")
    params = {**tracker.params, "canary.id": canary.id, "candidate": canary.candidate.spec,
              "candidate.kind": canary.candidate.kind, "canary.started_at": canary.started_at.isoformat(),
              "canary.share": canary.share, **{f"canary.live.{k}": v for k, v in cfg.model_dump().items()
                                               if k != "share"}}
    table = pd.DataFrame([{"mlflow_trace_id": r.mlflow_trace_id, "arm": r.arm, "question": r.result.question.question,
                           "answer": r.result.answer.answer, "error": r.result.answer.error or "",
                           "latency_s": r.result.answer.latency_s, cfg.metric: score_of(r.result.verdict, cfg.metric),
                           "user_rating": r.rating} for r in records],
                         columns=["mlflow_trace_id", "arm", "question", "answer", "error", "latency_s", cfg.metric,
                                  "user_rating"])
    tags = {**run_tags(LIVE_CANARY_KIND, context_tags), "reasonloop.canary_id": canary.id,
            "reasonloop.decision": decision.action, "candidate": canary.candidate.spec}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"live canary {canary.candidate.spec}",
                          tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(decision.model_dump(mode="json") | {"moved": moved}, "live_canary/decision.json")
        mlflow.log_table(table, artifact_file="live_canary/answers.json")

    def arm_row(arm: str) -> str:
        figures = arms[arm]
        quality = "n/a" if figures.quality is None else f"{figures.quality:.3f}"
        p50 = "n/a" if figures.latency_p50_s is None else f"{figures.latency_p50_s:.3f} s"
        return f"{figures.n} answers, {figures.error_rate:.1%} failed, {decision.metric} {quality}, p50 {p50}"

    return FlowReport(flow=LIVE_CANARY_KIND, run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={"candidate": f"{canary.candidate.spec} (canary {canary.id}, share {canary.share:.0%})",
                            **{arm: arm_row(arm) for arm in ARMS}, "decision": f"{decision.action}: {decision.reason}",
                            **({"moved": moved} if moved else {})})
