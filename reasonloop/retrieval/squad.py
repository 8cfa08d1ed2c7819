"""SQuAD v1.1 as a corpus + question set: passage id "{title}#{paragraph_index}", gold = that passage."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reasonloop.schemas import Question


def passage_records(squad: dict[str, Any], titles: Iterable[str] | None = None,
                    max_paragraphs: int | None = None) -> list[dict[str, Any]]:
    """Corpus records (id, title, text) for the chosen articles, in file order."""
    wanted = set(titles) if titles is not None else None
    records = []
    for article in squad["data"]:
        if wanted is not None and article["title"] not in wanted:
            continue
        for index, paragraph in enumerate(article["paragraphs"][:max_paragraphs]):
            records.append({"id": f"{article['title']}#{index}", "title": article["title"].replace("_", " "),
                            "text": paragraph["context"]})
    return records


def questions_for(squad: dict[str, Any], passage_ids: set[str], per_passage: int | None = None) -> list[Question]:
    """Questions whose gold passage is in `passage_ids`; the first reference answer is the reference."""
    questions = []
    for article in squad["data"]:
        for index, paragraph in enumerate(article["paragraphs"]):
            pid = f"{article['title']}#{index}"
            if pid not in passage_ids:
                continue
            for qa in paragraph["qas"][:per_passage]:
                questions.append(Question(id=qa["id"], question=qa["question"],
                                          reference=qa["answers"][0]["text"], gold_doc_ids=[pid],
                                          metadata={"article": article["title"]}))
    return questions


def load_squad(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
