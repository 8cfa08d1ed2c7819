"""Great Expectations suites run on the tables we are about to write, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task

from reasonloop.errors import InputError
from reasonloop.schemas import Document


@dataclass(frozen=True)
class Problem:
    expectation: str
    column: str
    rows: list[dict[str, Any]]

    def describe(self) -> str:
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in row.items() if k != self.column) or str(row)
                          for row in self.rows[:5])
        more = f" (+{len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
        return f"{self.expectation} on '{self.column}' failed for {len(self.rows)} row(s): {shown}{more}"


def check_frame(frame: pd.DataFrame, name: str, expectations: list[Any], index_columns: list[str]) -> list[Problem]:
    """Run a GX suite on a DataFrame; each failed expectation lists the offending rows by `index_columns`."""
    import great_expectations as gx  # ~5 s import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame},
                            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns})
    return [Problem(r.expectation_config.type, str(r.expectation_config.kwargs.get("column")),
                    list(r.result.get("unexpected_index_list") or []))
            for r in result.results if not r.success]


def document_expectations() -> list[Any]:
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="id"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1),
    ]


@task(name="validate-documents")
def validate_documents(documents: list[Document]) -> int:
    """Non-empty text and unique ids, checked before anything is embedded; returns the count checked."""
    frame = pd.DataFrame({"id": [d.id for d in documents], "source": [d.source for d in documents],
                          "n_chars": [len(d.text.strip()) for d in documents]})
    problems = check_frame(frame, "documents", document_expectations(), ["source", "id"])
    if problems:
        raise InputError("corpus validation failed, nothing was indexed:\n  " +
                         "\n  ".join(p.describe() for p in problems))
    return len(documents)
