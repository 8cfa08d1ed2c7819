"""A 10,000-question nightly eval in one process (task_runner threads) vs on a Dask LocalCluster of 2 worker
processes, at equal total concurrency, the same settings otherwise. Writes the `dask_eval` section of
bench-results.json and bench-results-dask_eval.md.

The reasoner is an OpenAI-compatible server on 127.0.0.1 with a fixed latency per call (run in this process, which
only waits while the runs are children), not the offline extractive reasoner: the extractive "model" runs inline on
each process's event-loop thread, so two worker processes would win by using a second core and hide the cost of
scaling out. Against an endpoint with fixed latency, as a hosted LLM is, the ideal time is known and the ratio shows
what Dask adds: worker start-up (imports, model load), task dispatch, pickling, per-process caches. The judge stays
the offline heuristic one, so embedding (retrieval, judging) is the run's CPU work, on both cores in both modes.

Concurrency is counted as batches at once and model calls in flight, both equal: threads: `prefect.max_workers`
batches, `llm.max_concurrency` calls in the one process; dask: `n_workers` x `threads_per_worker` batches, and each
worker process has its own `llm.max_concurrency`, so it is the total divided by the workers. A worker needs two
threads: with one, its calls stand idle while it retrieves or judges (CPU), where the one process's pool of calls
serves whichever batch is answering.

Each run is a fresh child process that imports the flow and loads the embedding model before the clock starts (as
a served deployment has them). Dask runs twice: with a LocalCluster started inside the run, its workers cold (as
`prefect.dask.address: null` does every night), and against a standing LocalCluster whose workers imported the flow
and loaded the model before the clock (as a running `dask scheduler` + workers are): the target is judged on the
second, the like of the single process.
Safety suite, drift and MLflow traces are off: they run in the flow's process in both modes and would only dilute
the ratio. Every run's per-question answers are read back from its MLflow run: each question exactly once, none
missing, and the server saw exactly one call per question (a batch run twice would show).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.benchmarks.run import ROOT, shared_squad, timed, write_results
from tests.support.openai_server import OpenAIServer, Reply, Responder, user_text
from tests.support.servers import free_port, reasonloop_env

TARGET = 1.15
TOTAL_CONCURRENCY = 8  # model calls in flight, across the run
BATCHES_AT_ONCE = 4  # batches in flight: threads, or worker processes x threads per worker
WORKERS = 2  # Dask worker processes
BATCH_SIZE = 256  # questions per task in both modes (on Dask each task run pays for Prefect's context)
CHUNK = re.compile(r'<chunk id="([^"]*)"[^>]*>\n(.*?)\n</chunk>', re.S)


def write_questions(work: Path, n: int, paragraphs: int) -> tuple[Path, Path, str]:
    """A corpus of the first `paragraphs` SQuAD dev paragraphs (file order) and `n` questions about them: their own
    questions, cycled with unique ids; copies carry a " (k)" suffix so every question is a distinct text (no memo
    hit a real question set would not have). Without the shared SQuAD, the project's sample corpus and questions."""
    from reasonloop.retrieval.record_sets import load_questions
    from reasonloop.retrieval.squad import load_squad, passage_records, questions_for

    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    squad_path = shared_squad()
    if squad_path is None:
        (corpus / "squad_sample.jsonl").write_bytes((ROOT / "data" / "corpus" / "squad_sample.jsonl").read_bytes())
        base = load_questions(ROOT / "data" / "questions" / "squad_sample.jsonl")
        source = f"the sample in data/ (shared SQuAD absent): {len(base)} questions cycled"
    else:
        squad = load_squad(squad_path)
        records = passage_records(squad)[:paragraphs]
        (corpus / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        base = questions_for(squad, {r["id"] for r in records})
        source = f"SQuAD v1.1 dev: {len(records)} paragraphs, their {len(base)} questions cycled"
    questions = [q if i < len(base) else q.model_copy(update={"id": f"{q.id}-{i // len(base)}",
                                                              "question": f"{q.question} ({i // len(base)})"})
                 for i, q in ((i, base[i % len(base)]) for i in range(n))]
    path = work / "questions.jsonl"
    path.write_text("".join(q.model_dump_json() + "\n" for q in questions), encoding="utf-8")
    return corpus, path, f"{source} to {n:,} distinct questions"


def scripted_reply(latency_s: float) -> Responder:
    """After `latency_s`, a chain-of-thought reply quoting the first sentence of the first chunk it was given and
    citing that chunk: deterministic per question, so two runs' answers can be compared question by question."""
    def reply(request: dict[str, Any]) -> Reply:
        chunks = CHUNK.findall(user_text(request))
        chunk_id, text = chunks[0] if chunks else ("", "The context does not say.")
        answer = text.split(". ")[0].strip()
        return Reply(content=json.dumps({"reasoning": {"problem": "p", "context": "c", "steps": ["s"],
                                                       "verification": "v"}, "answer": answer,
                                         "citations": [chunk_id] if chunk_id else [], "confidence": 0.8}),
                     delay_s=latency_s)
    return reply


def warm_worker(settings: Any) -> None:
    """In a Dask worker: the flow's modules imported and the embedding model loaded, as in a standing cluster."""
    import flows.nightly_eval  # noqa: F401
    from reasonloop.providers import build_embedder

    build_embedder(settings)


def child(out: Path, warm: bool) -> None:
    """One nightly eval in this fresh process, settings from the environment; writes its wall time, metrics and
    per-question answers (read back from its MLflow run) to `out`. With `warm` (Dask), the run goes to a standing
    LocalCluster started, and its workers warmed, before the clock starts (`prefect.dask.address`)."""
    from reasonloop.settings import apply_environment, load_settings

    settings = load_settings()
    apply_environment(settings)
    from flows.nightly_eval import nightly_eval
    from reasonloop.monitoring.runs import run_results
    from reasonloop.providers import build_embedder, build_tracker

    build_embedder(settings)  # imports done and the model loaded, as in a served deployment's process
    with ExitStack() as stack:
        if warm:
            from distributed import Client, LocalCluster

            dask = settings.prefect.dask
            cluster = stack.enter_context(LocalCluster(n_workers=dask.n_workers, processes=True, host="127.0.0.1",
                                                       threads_per_worker=dask.threads_per_worker,
                                                       dashboard_address=None))
            stack.enter_context(Client(cluster)).run(warm_worker, settings)
            settings = settings.updated({"prefect": {"dask": dask.model_copy(
                update={"address": cluster.scheduler_address})}})
        seconds, report = timed(lambda: nightly_eval(settings))
    results = run_results(build_tracker(settings), report.run_id)
    answers = [[r.question.id, r.answer.answer, [[c.chunk_id, c.score] for c in r.retrieved]] for r in results]
    out.write_text(json.dumps({"seconds": seconds, "metrics": report.metrics, "answers": answers}), encoding="utf-8")


@contextmanager
def prefect_api(work: Path) -> Iterator[str]:
    """One Prefect server for every run (a temporary one per process would start inside each timed run)."""
    from reasonloop.ops.prefect_server import local_server

    with local_server(work / "prefect-server", free_port()) as api_url:
        yield api_url


def run_eval(mode: str, work: Path, sections: dict[str, Any], server: OpenAIServer) -> dict[str, Any]:
    """One nightly eval in a child process, and the model calls the server saw during it."""
    dask = {"n_workers": WORKERS, "threads_per_worker": BATCHES_AT_ONCE // WORKERS, "batch_size": BATCH_SIZE}
    runner = "threads" if mode == "threads" else "dask"
    per_process = TOTAL_CONCURRENCY // WORKERS if runner == "dask" else TOTAL_CONCURRENCY
    env = reasonloop_env(work / "state", **{**sections, "llm": {**sections["llm"], "max_concurrency": per_process},
                                            "prefect": {**sections["prefect"], "task_runner": runner, "dask": dask}})
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    out = work / f"{mode}.json"
    before = len(server.calls)
    subprocess.run([sys.executable, "-m", "tests.benchmarks.dask_eval", "--child", str(out),
                    *(["--warm"] if mode == "dask-warm" else [])], cwd=ROOT, env=env, check=True)
    run = json.loads(out.read_text(encoding="utf-8"))
    run["model_calls"] = len(server.calls) - before
    return run


def tie_tolerance(backend: str) -> float:
    """How far apart two fused scores may be and still be a tie the encoder's float noise can break. fp32: 0.001.
    Otherwise 0.02: a bf16 (or dynamically quantized) vector moves with the batch it is encoded in, and a question's
    batch differs by process (each embedder's memo keeps the texts it has seen); cosine moves by up to ~1.4e-3 here,
    and z-score fusion divides that by the spread of the candidates' dense scores (~0.1)."""
    return 1e-3 if backend in ("torch", "onnx") else 0.02


def first_difference(ours: list[list[Any]], theirs: list[list[Any]]) -> tuple[list[Any], list[Any]] | None:
    """The first rank where two rankings of the same question differ: (chunk, score) of each, or None."""
    return next(((mine, other) for mine, other in zip(ours, theirs, strict=False) if mine[0] != other[0]), None)


def check_runs(runs: dict[str, list[dict[str, Any]]], tolerance: float) -> tuple[dict[str, int], list[str]]:
    """Every run against the first threads run: each question recorded once, none missing, one model call each, no
    failures; answers equal, or different only where the retrieved context broke a score tie (within `tolerance`)
    differently. Returns the count of such tie-broken answers per run and the failures."""
    reference = {qid: (answer, ranking) for qid, answer, ranking in runs["threads"][0]["answers"]}
    ties, failures = {}, []
    for mode, mode_runs in runs.items():
        for i, run in enumerate(mode_runs):
            name = f"{mode} #{i + 1}"
            answers = {qid: (answer, ranking) for qid, answer, ranking in run["answers"]}
            if len(answers) != len(run["answers"]) or answers.keys() != reference.keys():
                failures.append(f"{name}: questions recorded twice, missing or extra")
                continue
            if run["model_calls"] != len(reference) or run["metrics"]["n_failed"]:
                failures.append(f"{name}: {run['model_calls']} model calls, {run['metrics']['n_failed']} failed")
            firsts = {qid: first_difference(reference[qid][1], answers[qid][1]) for qid in reference
                      if answers[qid][0] != reference[qid][0]}
            untied = {qid: first for qid, first in firsts.items()
                      if first is None or abs(first[0][1] - first[1][1]) >= tolerance}
            ties[name] = len(firsts) - len(untied)
            if untied:
                failures.append(f"{name}: {len(untied)} answers differ, not by a score tie (question: first "
                                f"differing (chunk, score) here vs in one process): {list(untied.items())[:3]}")
    return ties, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--paragraphs", type=int, default=600, help="SQuAD dev paragraphs indexed (file order)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per model call")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, threads then dask (cold, then warm) in each "
                        "(best of); one round takes ~30 min on 2 cores")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-cold", action="store_true", help="skip the run whose LocalCluster starts inside it")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warm)
        return

    from reasonloop.evaluation.config import QualityConfig
    from reasonloop.settings import apply_environment, load_settings

    with tempfile.TemporaryDirectory(prefix="reasonloop-dask-eval-") as tmp, \
            OpenAIServer(scripted_reply(args.latency)) as server, prefect_api(Path(tmp)) as api_url:
        work = Path(tmp)
        corpus, questions, source = write_questions(work, args.questions, args.paragraphs)
        sections: dict[str, Any] = {
            "corpus": {"path": corpus}, "questions": {"path": questions},
            "llm": {"provider": "openai", "model": "scripted", "base_url": server.base_url},
            "eval": {"batch_size": BATCH_SIZE}, "cache": {"enabled": False, "checkpoint": False},
            "safety": {"enabled": False}, "drift": {"enabled": False}, "mlflow": {"log_traces": False},
            "prefect": {"api_url": api_url, "max_workers": BATCHES_AT_ONCE}}
        settings = load_settings(state_dir=work / "state", **sections).model_copy(update={"quality": QualityConfig()})
        os.environ.update({"PREFECT_API_URL": api_url, "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"})
        apply_environment(settings)
        from flows.reindex import reindex

        index_s, indexed = timed(lambda: reindex(settings))
        runs: dict[str, list[dict[str, Any]]] = {"threads": [], "dask": [], "dask-warm": []}
        if args.no_cold:
            del runs["dask"]
        for _ in range(args.rounds):
            for mode in runs:  # alternated: drift in the machine's speed hits both
                runs[mode].append(run_eval(mode, work, sections, server))
    report(args, source, index_s, int(indexed.metrics["n_chunks"]), settings.embedding.backend, runs)


def report(args: argparse.Namespace, source: str, index_s: float, chunks: int, backend: str,
           runs: dict[str, list[dict[str, Any]]]) -> None:
    """Write the JSON and the table, then fail on any run that did not record each question once or whose answers
    differ from the single-process run's (other than by a score tie)."""
    tolerance = tie_tolerance(backend)
    ties, failures = check_runs(runs, tolerance)
    best = {mode: min(r["seconds"] for r in mode_runs) for mode, mode_runs in runs.items()}
    n = len(runs["threads"][0]["answers"])
    ideal = n * args.latency / TOTAL_CONCURRENCY
    ratio = best["dask-warm"] / best["threads"]
    cold = best["dask"] / best["threads"] if "dask" in best else float("nan")
    result = {"questions": n, "source": source, "indexed_chunks": chunks, "index_s": index_s,
              "latency_s": args.latency, "rounds": args.rounds, "batch_size": BATCH_SIZE,
              "concurrency": {"total_model_calls": TOTAL_CONCURRENCY, "batches_at_once": BATCHES_AT_ONCE,
                              "threads": {"prefect.max_workers": BATCHES_AT_ONCE,
                                          "llm.max_concurrency": TOTAL_CONCURRENCY},
                              "dask": {"prefect.dask.n_workers": WORKERS,
                                       "threads_per_worker": BATCHES_AT_ONCE // WORKERS,
                                       "llm.max_concurrency": TOTAL_CONCURRENCY // WORKERS}},
              "ideal_s": ideal, "threads_s": best["threads"], "dask_s": best["dask-warm"],
              "dask_cold_s": best.get("dask"), "cold_ratio": cold,
              "runs_s": {mode: [r["seconds"] for r in rs] for mode, rs in runs.items()},
              "accuracy": runs["threads"][0]["metrics"]["accuracy"], "embedding_backend": backend,
              "tie_tolerance": tolerance, "answers_differing_by_a_score_tie": ties,
              "failures": failures, "ratio": ratio, "target": f"<= {TARGET}", "passed": ratio <= TARGET}
    lines = [f"# Nightly eval of {n:,} questions: one process vs a Dask LocalCluster", "",
             f"Questions: {source}; {chunks:,} chunks indexed once ({index_s:.0f} s), shared by every run. Model: "
             f"an OpenAI-compatible server on 127.0.0.1 answering after {args.latency * 1000:.0f} ms; judge: the "
             f"offline heuristic one. Best of {args.rounds} alternated rounds.", "",
             "| run | settings | batches at once | model calls in flight | wall s (best) | vs ideal |",
             "|---|---|---|---|---|---|",
             f"| single process | `prefect.task_runner: threads`, `max_workers: {BATCHES_AT_ONCE}`, "
             f"`llm.max_concurrency: {TOTAL_CONCURRENCY}` | {BATCHES_AT_ONCE} | {TOTAL_CONCURRENCY} | "
             f"{best['threads']:.1f} | {ideal / best['threads']:.2f} |",
             *(f"| Dask LocalCluster, {kind} | `prefect.task_runner: dask`, `dask.n_workers: {WORKERS}`, "
               f"`threads_per_worker: {BATCHES_AT_ONCE // WORKERS}`, `llm.max_concurrency: "
               f"{TOTAL_CONCURRENCY // WORKERS}` (per worker process) | "
               f"{BATCHES_AT_ONCE} | {TOTAL_CONCURRENCY} | {best[mode]:.1f} | {ideal / best[mode]:.2f} |"
               for mode, kind in (("dask", "started by the run (`address: null`)"),
                                  ("dask-warm", "standing, workers warm (`address:` its scheduler)")) if mode in best),
             "",
             f"Dask / single process: **{ratio:.3f}** with the standing cluster (target {result['target']}: "
             f"{result['passed']}; the single process has its model loaded too), {cold:.3f} with a cluster started "
             "by the run (cold workers: imports and the model inside the timed run). Ideal "
             f"(questions x latency / calls in flight): {ideal:.0f} s. Questions per task: {BATCH_SIZE} in both "
             "modes (`eval.batch_size`, `prefect.dask.batch_size`).", "",
             "Checks: " + ("; ".join(failures) if failures else f"every run recorded each of the {n:,} questions "
                           "exactly once with one model call; answers equal the single-process run's question by "
                           "question, except where the retrieved context broke a score tie (within "
                           f"{tolerance:g}, encoder `{backend}`) differently: "
                           + ", ".join(f"{k}: {v}" for k, v in ties.items()) + ".")]
    write_results(args.out, {"dask_eval": result}, lines, "dask_eval")
    assert not failures, failures


if __name__ == "__main__":
    main()
