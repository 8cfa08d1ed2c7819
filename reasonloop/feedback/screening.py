"""Feedback in: every feedback file row by row (pydantic, in records.py), then the table's Great Expectations suite;
bad rows are quarantined, and too many fail the build before anything is written."""

from __future__ import annotations

import hashlib

from reasonloop.errors import EmptyInputError
from reasonloop.feedback.config import PreferencesConfig
from reasonloop.feedback.records import FEEDBACK_PATTERNS, FeedbackLoad, load_feedback, merge_loads, reject_at
from reasonloop.validation import check_bad_fraction, check_frame


def screen_feedback(loaded: FeedbackLoad) -> FeedbackLoad:
    """The Great Expectations suite over the feedback table (the project's `check_frame`, as for documents): no
    row submitted twice (the first is kept) and no U+FFFD replacement characters, which mean the text was decoded
    lossily before it reached us. Failing rows move to the rejects. Imports GX (~5 s) only when called."""
    if not loaded.records:
        return loaded
    import great_expectations as gx
    import pandas as pd

    keys = [hashlib.sha256(r.model_dump_json().encode("utf-8")).hexdigest() for r in loaded.records]
    texts = ["\n".join(filter(None, (r.question, r.answer, r.corrected_answer, r.comment))) for r in loaded.records]
    frame = pd.DataFrame({"row": range(len(keys)), "key": keys, "text": texts})
    expectations = [gx.expectations.ExpectColumnValuesToBeUnique(column="key"),
                    gx.expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex="\ufffd")]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    reasons: dict[int, str] = {}
    for problem in check_frame(frame, "feedback", expectations, ["row"]):
        for row in problem.rows:
            i = int(row["row"])
            if problem.column == "key" and first[keys[i]] != i:
                reasons.setdefault(i, f"duplicate of {loaded.origins[first[keys[i]]]} (the first one is kept)")
            elif problem.column == "text":
                reasons.setdefault(i, "text contains U+FFFD replacement characters: it was decoded lossily "
                                      "before it was saved; re-export it as UTF-8")
    keep = [i for i in range(len(keys)) if i not in reasons]
    moved = [reject_at(loaded.origins[i], why) for i, why in sorted(reasons.items())]
    return FeedbackLoad(records=[loaded.records[i] for i in keep], origins=[loaded.origins[i] for i in keep],
                        rejects=[*loaded.rejects, *moved])


def read_feedback(cfg: PreferencesConfig, known_run_ids: set[str] | None,
                  traced: FeedbackLoad | None = None) -> FeedbackLoad:
    """Every feedback file row by row (pydantic), with `traced` (what users said on served answers, validated the
    same way), then all of it as a table (great-expectations); fails, writing nothing, when more than
    `preferences.max_bad_fraction` of the rows were rejected."""
    assert cfg.feedback_dir is not None  # resolved by the settings
    traced = traced or FeedbackLoad()
    other_sources = cfg.rlaif.enabled or bool(traced.records or traced.rejects)
    files = load_feedback(cfg.feedback_dir, known_run_ids) if cfg.feedback_dir.exists() or not other_sources \
        else FeedbackLoad()
    loaded = screen_feedback(merge_loads(files, traced))
    if not loaded.records and not loaded.rejects and not cfg.rlaif.enabled:
        raise EmptyInputError(f"no feedback rows in {', '.join(FEEDBACK_PATTERNS)} files or served answers' traces: "
                              "add some with `reasonloop feedback add` or POST /v1/feedback, or switch on "
                              "preferences.rlaif", path=cfg.feedback_dir)
    if loaded.records or loaded.rejects:
        check_bad_fraction(len(loaded.records), loaded.rejects, cfg.max_bad_fraction, "preferences.max_bad_fraction",
                           "no dataset was built")
    return loaded
