"""Table checks before anything is written: a Great Expectations suite over a DataFrame (the failing rows named),
and the share of rejected inputs a run tolerates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reasonloop.errors import InputError
from reasonloop.schemas import Reject


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


def check_bad_fraction(n_good: int, rejects: list[Reject], max_bad_fraction: float, setting: str,
                       consequence: str) -> float:
    """The share of rejected inputs; an InputError listing them (before any write) when it is over
    `max_bad_fraction` or nothing good is left."""
    seen = n_good + len(rejects)
    fraction = len(rejects) / seen if seen else 0.0
    if fraction > max_bad_fraction or not n_good:
        listing = "\n  ".join(f"{r.where()}: {r.reason}" for r in rejects[:20])
        more = f"\n  ... and {len(rejects) - 20} more" if len(rejects) > 20 else ""
        raise InputError(f"{len(rejects)} of {seen} inputs are bad ({fraction:.1%}, over {setting} = "
                         f"{max_bad_fraction:.1%}); {consequence}:\n  {listing}{more}")
    return fraction
