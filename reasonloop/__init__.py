"""reasonloop: Prefect flows that index, reason, evaluate and track an LLM reasoning system in MLflow."""

__version__ = "0.1.0"
