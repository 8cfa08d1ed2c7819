"""Live canary check (scheduled every 30 minutes by the `live-canary-check` deployment): the traffic the running
canary has served, both arms, read back from MLflow's traces -> judged by production's judge (verdicts kept, so a
check judges only what is new) -> promote, keep collecting or roll back (reasonloop/evaluation/canary_decision.py)
-> act (move the alias or production pointer; end the canary) -> one MLflow run in `<prefix>-live-canary`.
With no canary running it does nothing; `stop=True` ends the canary with production unchanged, logged the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from flows.live_eval import judge_window
from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, read_canary
from reasonloop.providers import build_embedder, build_judge, build_tracker
from reasonloop.reasoning.answer_store import open_record_store
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.canary import promote_candidate
from tasks.live import clear_canary, decide_canary, log_live_canary_run, read_canary_traffic
from tasks.track import publish_summary

STOPPED = "stopped by `reasonloop canary stop`: production unchanged"


@flow(name="live-canary-check", validate_parameters=False)
def check_live_canary(settings: Settings | None = None, stop: bool = False) -> FlowReport | None:
    settings = settings or load_settings()
    path = settings.state_dir / LIVE_CANARY_FILE
    canary = read_canary(path)
    if canary is None:
        get_run_logger().info("no live canary is running (`reasonloop canary start` starts one)")
        return None
    tracker = build_tracker(settings)
    window = read_canary_traffic(tracker, settings.live, canary)
    embedder = build_embedder(settings)
    store = open_record_store(settings.state_dir, settings.cache, f"live-canary-{canary.id}", "verdicts")
    results = judge_window(settings, window, build_judge(settings, embedder), store)
    records = [r.model_copy(update={"result": judged}) for r, judged in zip(window.records, results, strict=True)]
    age_s = (datetime.now(UTC) - canary.started_at).total_seconds()
    decision = decide_canary(settings.canary.live, records, age_s)
    if stop:
        decision = decision.model_copy(update={"action": "stop", "reason": STOPPED})
    moved = promote_candidate(canary.candidate, settings.prompts, settings.canary.alias, settings.pointer_path) \
        if decision.action == "promote" else ""
    if decision.action != "keep":  # after the promotion: a crash in between leaves the canary to promote again
        clear_canary(path)
    report = log_live_canary_run(tracker, canary, settings.canary.live, decision, records, moved)
    publish_summary(report)
    return report
