"""Faithfulness of the offline heuristic judge against human labels: SummEdits (all pairs of the three shared
domains), judged as `reasonloop judge calibrate` judges them (the summary is the answer, the document its only
evidence; consistent = no unsupported sentence). The claim checks of evaluation/faithfulness.py were developed on
sales_call only, so scitldr and qmsumm measure how they generalise; each domain is also split by SummEdits' own
`split` field. Target: balanced accuracy >= 0.65 on the domains not tuned on.

Writes bench-results-faithfulness.json at the repo root."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.benchmarks.run import ROOT, shared_file

DOMAINS = ("sales_call", "scitldr", "qmsumm")
TUNED_ON = "sales_call"
TARGET = 0.65


def shared_summedits() -> list[Path] | None:
    """The three SummEdits files in the shared data folder (REASONLOOP_SHARED_DATA, default ../shared/data)."""
    paths = [shared_file(f"summedits/summedits_{domain}.json") for domain in DOMAINS]
    return [p for p in paths if p] if all(paths) else None


def splits_by_id(paths: list[Path]) -> dict[str, str]:
    """SummEdits' `split` of every pair (our LabeledPair does not keep it)."""
    return {row["id"]: row.get("split") or "all" for path in paths
            for row in json.loads(path.read_text(encoding="utf-8"))}


def row(agreement: Any, domain: str, split: str) -> dict[str, Any]:
    role = "tuned" if domain == TUNED_ON else "all" if domain == "all" else "unseen"
    return {"domain": domain, "split": split, "role": role, **agreement.model_dump(exclude={"slice"})}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results-faithfulness.json")
    args = parser.parse_args()
    paths = shared_summedits()
    if paths is None:
        print("SummEdits not found in the shared data folder (REASONLOOP_SHARED_DATA): faithfulness benchmark skipped")
        return

    from reasonloop.settings import apply_environment, load_settings

    settings = load_settings(state_dir=Path(tempfile.mkdtemp(prefix="reasonloop-faithfulness-")))
    apply_environment(settings)
    from reasonloop.evaluation.calibration import agreement, calibrate_judge
    from reasonloop.evaluation.judges import HeuristicJudge
    from reasonloop.providers import build_embedder
    from reasonloop.retrieval.record_sets import load_labeled_pairs

    pairs = load_labeled_pairs(paths)
    cfg = settings.judge
    judge = HeuristicJudge(build_embedder(settings), cfg.correctness_threshold, cfg.grounding_threshold)
    began = time.perf_counter()
    slices, verdicts = calibrate_judge(judge, pairs)
    seconds = time.perf_counter() - began

    split_of = splits_by_id(paths)
    by_split: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        by_split[(pair.domain or "all", split_of.get(pair.id, "all"))].append(i)
    rows = [row(s, s.slice, "all") for s in slices]
    rows += [row(agreement(f"{domain}/{split}", [pairs[i].label for i in idx], [verdicts[i] for i in idx]),
                 domain, split) for (domain, split), idx in sorted(by_split.items())]
    rows.sort(key=lambda r: (r["domain"] == "all", DOMAINS.index(r["domain"]) if r["domain"] in DOMAINS else 0,
                             r["split"] != "all", r["split"]))

    unseen = [r for r in rows if r["role"] == "unseen" and r["split"] == "all"]
    result = {"judge": judge.identity, "tuned_on": TUNED_ON, "target_unseen_balanced_accuracy": TARGET,
              "unseen_meets_target": all((r["balanced_accuracy"] or 0) >= TARGET for r in unseen),
              "data": [os.path.relpath(p, ROOT) for p in paths], "pairs": len(pairs),
              "judge_seconds": round(seconds, 1), "slices": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"Heuristic judge ({judge.version}, grounding >= {cfg.grounding_threshold}) vs SummEdits human labels; "
          f"claim checks tuned on {TUNED_ON} only\n")
    print(f"{'domain':<12}{'split':<12}{'role':<8}{'n':>5}{'bal.acc':>9}{'kappa':>8}{'AUROC':>8}{'pred.cons':>11}")
    for r in rows:
        print(f"{r['domain']:<12}{r['split']:<12}{r['role']:<8}{r['n']:>5}{fmt(r['balanced_accuracy']):>9}"
              f"{fmt(r['cohen_kappa']):>8}{fmt(r['auroc']):>8}{fmt(r['predicted_consistent']):>11}")
    verdict = "meets" if result["unseen_meets_target"] else "does NOT meet"
    print(f"\nunseen domains {verdict} balanced accuracy >= {TARGET}; judged {len(pairs)} pairs in {seconds:.0f} s; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
