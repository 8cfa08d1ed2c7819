"""The monitoring layer: runs in MLflow, drift, and the vitals people watch.

- `tracking.py` (the tracker: a store, one experiment per flow kind, who writes a run), `runs.py` (reading runs
  back: results, baselines, review queues, lineage), `eval_run.py`, `flow_runs.py`, `drift_run.py` (writing each
  flow's run), `run_fields.py` (what runs log, flattened), `drift_windows.py` (the current and reference windows
  read back), `drift_signals.py` and `drift_stats.py` (per-question values and the statistical tests),
  `drift_report.py`, `report.py` (the eval's HTML report), `vitals.py` (dashboard and Prometheus text),
  `live_traces.py` (live traffic read back from MLflow traces), `live_eval_run.py` and `live_canary_run.py` (the
  live eval's and the live canary check's runs);
- `config.py`: the mlflow and drift sections.

May import: every layer below (it records what they produced) and the shared leaves. Never `ops`, the settings,
the factory or the CLI: it takes a `Tracker`, never the settings."""
