"""A preference dataset on disk in TRL's format: train/test .jsonl and .parquet, lineage.jsonl, dataset_card.md and
manifest.json, written atomically and byte-identical for the same dataset (its sha256 names the folder)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasonloop.feedback.preferences import SOURCES, PreferenceDataset, PreferencePair, count_by_source, priority


def canonical_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def trl_row(pair: PreferencePair, conversational: bool) -> dict[str, Any]:
    """A row in TRL's preference format, standard (strings) or conversational (message lists, explicit prompt)."""
    if not conversational:
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    return {"prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}]}


def export_dataset(dataset: PreferenceDataset, out_dir: Path, conversational: bool = False) -> dict[str, Any]:
    """Write `train.jsonl`, `test.jsonl` (TRL preference rows), the same rows as `.parquet`, `lineage.jsonl` (each
    row's source, question id, runs and margin), `dataset_card.md` and
    `manifest.json` (sha256 of every other file), and return the manifest.

    The files are written in a temporary folder next to `out_dir`, which then replaces `out_dir` by rename, so a
    reader never sees half a dataset. Same dataset + flags -> byte-identical files (sorted keys, fixed order, no
    timestamps)."""
    splits = {"train": sorted(dataset.train, key=priority), "test": sorted(dataset.test, key=priority)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        files: dict[str, bytes] = {}
        for name, pairs in splits.items():
            rows = [trl_row(p, conversational) for p in pairs]
            files[f"{name}.jsonl"] = "".join(canonical_json(r) + "\n" for r in rows).encode("utf-8")
            files[f"{name}.parquet"] = _parquet_bytes(rows, conversational)
        if dataset.config.kto:
            files["kto.jsonl"] = "".join(canonical_json(r) + "\n" for r in dataset.unpaired).encode("utf-8")
        files["lineage.jsonl"] = "".join(
            canonical_json({"split": name, "row": i, "source": p.source, "question_id": p.question_id,
                            "source_run_ids": p.source_run_ids, "margin": p.margin, "meta": p.meta,
                            **({"source_trace_ids": p.source_trace_ids} if p.source_trace_ids else {})}) + "\n"
            for name, pairs in splits.items() for i, p in enumerate(pairs)).encode("utf-8")
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
        files["dataset_card.md"] = dataset_card(dataset, conversational, hashes).encode("utf-8")
        hashes["dataset_card.md"] = hashlib.sha256(files["dataset_card.md"]).hexdigest()
        manifest = {"format": "conversational" if conversational else "standard", "type": "preference",
                    "rows": {name: len(pairs) for name, pairs in splits.items()},
                    "files": dict(sorted(hashes.items())),
                    "dataset_sha256": hashlib.sha256(canonical_json(hashes).encode()).hexdigest()}
        files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
        for name, data in files.items():
            with open(tmp / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        tmp.chmod(0o755)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _parquet_bytes(rows: list[dict[str, Any]], conversational: bool) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.string()
    column = pa.list_(pa.struct([("role", text), ("content", text)])) if conversational else text
    table = pa.Table.from_pylist(rows, schema=pa.schema([("prompt", column), ("chosen", column), ("rejected", column)]))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an existing `out_dir` is moved aside first and removed after."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def dataset_card(dataset: PreferenceDataset, conversational: bool, hashes: Mapping[str, str]) -> str:
    """The dataset's card: format, rows per split and source, what each hygiene step removed, leaked prompts, the
    configuration and the runs the answers came from. Deterministic (no dates)."""
    report = dataset.report
    train, test = count_by_source(dataset.train), count_by_source(dataset.test)
    runs = sorted({r for p in [*dataset.train, *dataset.test] for r in p.source_run_ids})
    traces = sorted({t for p in [*dataset.train, *dataset.test] for t in p.source_trace_ids})
    lines = ["# Preference dataset", "",
             f"TRL preference format, {'conversational' if conversational else 'standard'}: columns `prompt`, "
             "`chosen`, `rejected` (`train.jsonl`, `test.jsonl`" + (", and the same rows as Parquet" if
                                                                   "train.parquet" in hashes else "") + ").",
             "Each row's source, question id, runs and margin are in `lineage.jsonl`.",
             *([f"`kto.jsonl`: {len(dataset.unpaired)} unpaired rows (`prompt`, `completion`, `label`) for KTO from "
                "single ratings (liked or corrected: true, disliked: false); "
                f"{dataset.unpaired_leaked} dropped by the leakage guard or the length limits."]
               if dataset.config.kto else []), "",
             "## Rows", "", "| source | built | kept | train | test |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {report.per_source_in.get(s, 0)} | {report.per_source_out.get(s, 0)} | {train[s]} | "
              f"{test[s]} |" for s in SOURCES]
    lines += [f"| **all** | {report.n_in} | {report.n_out} | {len(dataset.train)} | {len(dataset.test)} |", "",
              "## Hygiene", "", f"PII or secrets redacted in {report.redacted} pair(s).", "",
              "| step | removed |", "|---|---|"]
    lines += [f"| {step} | {n} |" for step, n in report.removed.items()]
    lines += ["", "## Eval leakage", "",
              f"{len(report.leaked)} prompt(s) matched an evaluation question and were removed."]
    lines += [f"- {canonical_json(leak.prompt)} ~ {leak.eval_set}: {canonical_json(leak.eval_question)} "
              f"({leak.kind}, cosine {leak.cosine:.4f})" for leak in report.leaked]
    lines += ["", "## Configuration", "", "```json", json.dumps(dataset.config.model_dump(
                  mode="json", exclude={"feedback_dir": True, "out_dir": True, "rlaif": {"questions"}}),
                  indent=2, sort_keys=True), "```", "",
              "## Lineage", "", f"Answers from {len(runs)} run(s):"]
    lines += [f"- `{run}`" for run in runs] or ["- (none recorded)"]
    if traces:
        lines += ["", f"and from {len(traces)} served request(s) (MLflow traces, in `lineage.jsonl`)."]
    lines += ["", "## Files", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in sorted(hashes.items())]
    return "\n".join(lines) + "\n"
