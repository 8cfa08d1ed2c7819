"""Screening a batch of loaded documents before it is chunked: the Great Expectations suite on the document table
and the prompt-injection scan (the share of bad inputs a reindex tolerates is checked over the whole corpus before
anything is written, in index_survey.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reasonloop.retrieval.config import CorpusConfig
from reasonloop.retrieval.injection import detect_injection
from reasonloop.retrieval.sources import SUPPORTED_TYPES, record_line
from reasonloop.schemas import LoadedCorpus, Reject
from reasonloop.validation import Problem, check_frame


def document_expectations(cfg: CorpusConfig) -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1, max_value=cfg.max_doc_chars),
        gx.expectations.ExpectColumnValuesToBeInSet(column="type", value_set=sorted(SUPPORTED_TYPES)),
        gx.expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex="\ufffd"),
    ]


def _reason(problem: Problem, row: dict[str, Any], cfg: CorpusConfig) -> str:
    if problem.column == "id":
        return f"duplicate id '{row['id']}' (the first one in path order is kept)"
    if problem.column == "n_chars":
        return "empty text" if row["n_chars"] < 1 else f"text over corpus.max_doc_chars ({cfg.max_doc_chars:,})"
    if problem.column == "type":
        return f"unsupported type '{row['type']}'"
    return "text contains U+FFFD replacement characters: it was decoded lossily before reaching the corpus"


def screen_documents(loaded: LoadedCorpus, cfg: CorpusConfig) -> LoadedCorpus:
    """The Great Expectations suite on the document table, before anything is embedded: non-empty text within
    the size limit, unique ids, allowed types, no lossy decoding. Failing rows join the rejects."""
    docs = loaded.documents
    if not docs:
        return loaded
    frame = pd.DataFrame({"row": range(len(docs)), "id": [d.id for d in docs], "source": [d.source for d in docs],
                          "n_chars": [len(d.text.strip()) for d in docs], "text": [d.text for d in docs],
                          "type": [Path(d.source.rsplit(":", 1)[0]).suffix for d in docs]})
    problems = check_frame(frame, "documents", document_expectations(cfg), ["row", "id", "n_chars", "type"])
    reasons: dict[int, str] = {}
    for problem in problems:
        rows = problem.rows
        if problem.column == "id":  # keep the first occurrence of each duplicated id
            first = {r["id"]: r["row"] for r in sorted(rows, key=lambda r: r["row"], reverse=True)}
            rows = [r for r in rows if first[r["id"]] != r["row"]]
        for row in rows:
            reasons.setdefault(int(row["row"]), _reason(problem, row, cfg))
    kept = [d for i, d in enumerate(docs) if i not in reasons]
    flagged = [Reject(source=docs[i].source.rsplit(":", 1)[0], line=record_line(docs[i].source), reason=why)
               for i, why in sorted(reasons.items())]
    return LoadedCorpus(documents=kept, rejects=[*loaded.rejects, *flagged])


def scan_for_injection(screened: LoadedCorpus, mode: str) -> LoadedCorpus:
    """Documents that read like instructions to the model are flagged in their metadata (`injection_rules`,
    carried into every chunk) or, in quarantine mode, refused with the rules that fired."""
    kept, rejects, flagged = [], list(screened.rejects), []
    for doc in screened.documents:
        rules = detect_injection(f"{doc.title}\n{doc.text}")
        if not rules:
            kept.append(doc)
            continue
        flagged.append(doc.id)
        if mode == "quarantine":
            rejects.append(Reject(source=doc.source.rsplit(":", 1)[0], line=record_line(doc.source),
                                  reason=f"looks like prompt injection ({', '.join(rules)})"))
        else:
            kept.append(doc.model_copy(update={"metadata": {**doc.metadata, "injection_rules": ",".join(rules)}}))
    return LoadedCorpus(documents=kept, rejects=rejects, flagged=flagged)
