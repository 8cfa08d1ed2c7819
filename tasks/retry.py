"""When a Prefect task should retry: transient I/O failures yes, our own input/config errors never."""

from __future__ import annotations

from typing import Any

from reasonloop.errors import ReasonloopError


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the failure is a ReasonloopError (bad input, config)."""
    try:
        state.result()
    except ReasonloopError:
        return False
    except Exception:  # noqa: BLE001 - anything else may be a flaky server, disk or network
        return True
    return False


IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [2, 10], "retry_condition_fn": is_transient}
"""Task options for I/O tasks (vector store, endpoints): two retries on transient failures only."""
