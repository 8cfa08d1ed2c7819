"""Feedback tasks: the table-level checks (great-expectations) after the per-row pydantic validation."""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.feedback.records import FeedbackLoad, reject_at
from tasks.validate import check_frame


@task(name="screen-feedback", cache_policy=NO_CACHE)
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
