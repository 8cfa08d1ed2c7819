"""The serving layer's configuration: the endpoint `reasonloop api` serves, its request limits and its trace export.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

from pydantic import Field

from reasonloop.schemas import Section


class ServingConfig(Section):
    """`reasonloop api`: the question-answering endpoint, traced into MLflow."""

    host: str = Field(default="127.0.0.1", description="interface the endpoint listens on")
    port: int = Field(default=8080, gt=0, lt=65536, description="its port")
    max_question_chars: int = Field(default=4000, gt=0, description="longer questions are refused (422)")
    max_answer_chars: int = Field(default=8000, gt=0, description="longer corrections are refused (422)")
    max_comment_chars: int = Field(default=2000, gt=0, description="longer feedback comments are refused (422)")
    max_metadata_keys: int = Field(default=16, ge=0, description="metadata entries a request may carry")
    export_batch: int = Field(default=64, gt=0, description="answers (and feedback) moved to MLflow per round")
    export_interval_s: float = Field(default=0.2, gt=0.0, description="how often the exporter looks for new ones")
    export_max_backlog: int = Field(default=10_000, gt=0, description="the exporter gives way to requests in flight "
                                    "until this many answers and feedback wait in the spool")
    export_nice: int | None = Field(default=10, ge=0, le=19, description="the exporter runs in its own process at "
                                    "this lower CPU priority, so MLflow's writes never slow the answers (what waits "
                                    "is in the spool); null: a thread of the endpoint's process")
    reload_check_s: float = Field(default=1.0, gt=0.0, description="how often the serving index, the production "
                                  "pointer and the live canary are looked at for changes")
