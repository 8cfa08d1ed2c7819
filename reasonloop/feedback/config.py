"""The feedback layer's configuration: the DPO/KTO dataset build.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reasonloop.schemas import Section
from reasonloop.text import DURATION

PairSource = Literal["correction", "thumbs", "rlaif"]


class RlaifConfig(Section):
    """AI-feedback pairs: the reasoner samples answers (self-consistency), the judge scores each against the
    reference; chosen = the best, rejected = the worst when the gap is wide enough."""

    enabled: bool = Field(default=False, description="build AI-feedback pairs too")
    questions: Path | None = Field(default=None, description="a question set with references to sample on (not an "
                                   "eval set: the leakage guard would drop every pair)")
    samples: int = Field(default=4, ge=2, le=16, description="answers sampled per question")
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    min_margin: float = Field(default=0.3, ge=0.0, le=1.0, description="judge-score gap chosen - rejected at least")

    @model_validator(mode="after")
    def _questions_when_enabled(self) -> RlaifConfig:
        if self.enabled and self.questions is None:
            raise ValueError("preferences.rlaif.enabled needs preferences.rlaif.questions (a question set with "
                             "references)")
        return self


class PreferencesConfig(Section):
    """`reasonloop build-dpo`: feedback -> preference pairs -> hygiene -> a TRL-format dataset."""

    feedback_dir: Path | None = Field(default=None, description="JSONL/CSV feedback files; None: <state_dir>/feedback")
    out_dir: Path | None = Field(default=None, description="exports go to <out_dir>/<dataset sha256[:12]>; None: "
                                 "<state_dir>/datasets")
    max_bad_fraction: float = Field(default=0.2, ge=0.0, le=1.0, description="rejected feedback rows above this "
                                    "share fail the build (nothing is written)")
    from_traces: bool = Field(default=True, description="also take the ratings and corrections users gave on served "
                              "answers (MLflow trace assessments)")
    traces_window: str = Field(default="7d", pattern=DURATION, description="how far back the "
                               "build looks for them")
    known_runs_only: bool = Field(default=True, description="a row's source_run_id must be a run in the MLflow "
                                  "store (nightly eval or canary)")
    corrections: bool = True
    thumbs: bool = True
    rlaif: RlaifConfig = Field(default_factory=RlaifConfig)
    kto: bool = Field(default=False, description="also export kto.jsonl: unpaired (prompt, completion, label) rows")
    conversational: bool = Field(default=False, description="TRL's conversational preference format")
    near_duplicate_threshold: float = Field(default=0.95, ge=0.0, le=1.0,
                                            description="prompts at or above this cosine to a kept one are dropped")
    leak_threshold: float = Field(default=0.85, ge=0.0, le=1.0,
                                  description="prompts at or above this cosine to an eval question are dropped")
    max_prompt_chars: int = Field(default=4000, ge=1, description="longer prompts are dropped (counted)")
    max_response_chars: int = Field(default=8000, ge=1, description="pairs with a longer answer are dropped")
    max_per_source: dict[PairSource, int] = Field(default_factory=dict, description="caps per source; absent: none")
    test_fraction: float = Field(default=0.1, ge=0.0, le=1.0, description="the test split's share")
    seed: int = Field(default=0, description="the split's and the caps' seed")
