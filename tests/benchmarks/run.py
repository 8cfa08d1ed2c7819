"""`make bench`: throughput and overhead ratios measured in one process, written to bench-results.{json,md}.

Ratios, not absolute times, are the targets: these machines are shared and noisy. The corpus is SQuAD v1.1
dev from the shared data folder when present (REASONLOOP_SHARED_DATA, default ../shared/data), else the
sample in data/ (the report says which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def shared_file(relative: str) -> Path | None:
    """A file of the shared data folder (REASONLOOP_SHARED_DATA, default ../shared/data), None when absent."""
    path = Path(os.environ.get("REASONLOOP_SHARED_DATA", ROOT.parent / "shared" / "data")) / relative
    return path if path.is_file() else None


def shared_squad() -> Path | None:
    return shared_file("squad/dev-v1.1.shared.json")


def write_dataset(work: Path, paragraphs: int, questions: int) -> tuple[Path, Path, str]:
    """Corpus + questions for the run: a SQuAD slice (first N paragraphs in file order) or the sample."""
    from reasonloop.retrieval.squad import load_squad, passage_records, questions_for

    squad_path = shared_squad()
    corpus_dir = work / "corpus"
    corpus_dir.mkdir(parents=True)
    if squad_path is None:
        shutil.copy(ROOT / "data" / "corpus" / "squad_sample.jsonl", corpus_dir)
        return corpus_dir, ROOT / "data" / "questions" / "squad_sample.jsonl", "data/ sample (shared SQuAD absent)"
    squad = load_squad(squad_path)
    records = passage_records(squad)[:paragraphs or None]
    (corpus_dir / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    qs = questions_for(squad, {r["id"] for r in records}, per_passage=1)[:questions]
    qpath = work / "questions.jsonl"
    qpath.write_text("".join(q.model_dump_json() + "\n" for q in qs), encoding="utf-8")
    return corpus_dir, qpath, f"SQuAD v1.1 dev, {len(records)} paragraphs, {len(qs)} questions"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def corpus_chunks(settings: Any) -> list[Any]:
    """The chunks the reindex flow will embed (a clean corpus: nothing quarantined), computed outside it."""
    from reasonloop.retrieval.chunking import chunk_documents
    from reasonloop.retrieval.corpus_scan import load_documents
    from reasonloop.retrieval.embeddings import load_embedder

    documents = load_documents(settings.corpus.path, settings.corpus).documents
    return chunk_documents(documents, settings.chunking, load_embedder(settings.embedding).count_tokens)


@contextmanager
def library_threads() -> Iterator[None]:
    """Baselines run as their library runs them: torch on every core (our embedder gives each worker one)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def bench_embedding(settings: Any) -> dict[str, Any]:
    """The reindex flow (load, validate, scan, chunk, embed, upsert, BM25, verify, log) vs encoding the same chunk
    texts bare: with our encoder (the ratio is the pipeline's overhead) and with SentenceTransformer.encode at the
    same batch size (the library's own path). Prefect's server is already up."""
    from sentence_transformers import SentenceTransformer

    from flows.reindex import reindex
    from reasonloop.retrieval.embeddings import bundled_model_path, load_embedder
    from reasonloop.retrieval.index_build import index_text

    chunks = corpus_chunks(settings)
    texts = [index_text(c, settings.chunking.title_prefix) for c in chunks]
    library = SentenceTransformer(str(bundled_model_path()), device="cpu")
    with library_threads():
        library_s, _ = timed(lambda: library.encode(texts, batch_size=settings.embedding.batch_size,
                                                    normalize_embeddings=True, show_progress_bar=False))
    ours_s, _ = timed(lambda: load_embedder(settings.embedding).embed_uncached(texts))
    flow_s, report = timed(lambda: reindex(settings))
    assert report.metrics["n_chunks"] == len(chunks)
    ratio = ours_s / flow_s
    return {"chunks": len(chunks), "library_encode_s": library_s, "encoder_s": ours_s, "reindex_flow_s": flow_s,
            "library_chunks_per_s": len(chunks) / library_s, "encoder_chunks_per_s": len(chunks) / ours_s,
            "flow_chunks_per_s": len(chunks) / flow_s, "ratio": ratio, "ratio_vs_library": library_s / flow_s,
            "target": ">= 0.85", "passed": ratio >= 0.85}


def bench_batch_sizes(settings: Any, sizes: tuple[int, ...] = (8, 16, 32, 64), n: int = 300,
                      rounds: int = 2) -> dict[str, Any]:
    """Encoder chunks/s per batch size on the same chunks (warmed up, best of `rounds`): justifies
    embedding.batch_size (on small CPUs small batches win: their activations stay in cache)."""
    from reasonloop.retrieval.embeddings import load_embedder
    from reasonloop.retrieval.index_build import index_text

    texts = [index_text(c, settings.chunking.title_prefix) for c in corpus_chunks(settings)[:n]]
    rates = {}
    for size in sizes:
        embedder = load_embedder(settings.embedding.model_copy(update={"batch_size": size}))
        embedder.embed_uncached(texts[:2 * size])
        best = min(timed(lambda e=embedder: e.embed_uncached(texts))[0] for _ in range(rounds))
        rates[str(size)] = len(texts) / best
    return {"chunks": len(texts), "chunks_per_s": rates, "configured": settings.embedding.batch_size,
            "best": max(rates, key=rates.__getitem__)}


def bench_incremental(settings: Any, full_s: float) -> dict[str, Any]:
    """A reindex of the unchanged corpus (it only hashes and compares) vs the full reindex just measured."""
    from flows.reindex import reindex

    seconds, report = timed(lambda: reindex(settings))
    assert report.metrics["n_embedded"] == 0 and report.metrics["new_version"] == 0
    ratio = seconds / full_s
    return {"full_s": full_s, "unchanged_s": seconds, "ratio": ratio, "target": "<= 0.05", "passed": ratio <= 0.05}


def bench_langchain(settings: Any, flow_s: float) -> dict[str, Any]:
    """What a LangChain user writes: HuggingFaceEmbeddings over the same model files at the same batch size +
    Chroma.from_documents over the same chunk texts, vs our whole reindex flow (validation, scan, versioning,
    BM25, quality gate, MLflow)."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document as LCDocument
    from langchain_huggingface import HuggingFaceEmbeddings

    from reasonloop.providers import chroma_of
    from reasonloop.retrieval.embeddings import bundled_model_path
    from reasonloop.retrieval.index_build import index_text

    chunks = corpus_chunks(settings)
    docs = [LCDocument(page_content=index_text(c, settings.chunking.title_prefix), metadata={"doc_id": c.doc_id})
            for c in chunks]
    embeddings = HuggingFaceEmbeddings(model_name=str(bundled_model_path()), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True,
                                                      "batch_size": settings.embedding.batch_size})
    with library_threads():
        embeddings.embed_documents(["warm up"])
        seconds, store = timed(lambda: Chroma.from_documents(docs, embeddings, client=chroma_of(settings),
                                                             ids=[c.id for c in chunks], collection_name="langchain",
                                                             collection_metadata={"hnsw:space": "cosine"}))
    assert store._collection.count() == len(chunks)
    ratio = seconds / flow_s
    return {"chunks": len(chunks), "langchain_s": seconds, "reindex_flow_s": flow_s, "speedup": ratio,
            "target": ">= 1.0", "passed": ratio >= 1.0}


def eval_results(settings: Any, embedder: Any, index: Any) -> tuple[list[Any], Any]:
    """(per-question results, summary) of the nightly eval's functions called directly, in the same batches,
    without Prefect and without MLflow."""
    from flows.nightly_eval import batched
    from reasonloop.evaluation.aggregate import collect_results, summarize_results
    from reasonloop.evaluation.judging import judge_answers
    from reasonloop.providers import build_judge, build_reasoner
    from reasonloop.reasoning.answering import answer_questions
    from reasonloop.reasoning.context import retrieve_chunks
    from reasonloop.retrieval.record_sets import load_questions

    questions = load_questions(settings.questions.path)
    reasoner, judge = build_reasoner(settings, embedder, index), build_judge(settings, embedder)
    results = []
    for batch in batched(questions, settings.eval.batch_size):
        contexts = retrieve_chunks(batch, index.retriever, settings.reasoning, settings.optimize)
        answers = answer_questions(batch, contexts, reasoner, settings.llm.limits())
        verdicts = judge_answers(batch, contexts, answers, judge)
        results += collect_results(batch, contexts, answers, verdicts)
    complex_calls = settings.reasoning.complex_calls(len(settings.prompts.paths))
    return results, summarize_results(results, complex_calls, settings.optimize.alpha)


def plain_eval(settings: Any) -> Any:
    """The whole nightly eval without Prefect: the same functions, then the same MLflow logging."""
    from reasonloop.evaluation.gate import check_regression
    from reasonloop.evaluation.retrieval_quality import evaluate_retrieval
    from reasonloop.evaluation.safety import load_safety_cases, run_safety_suite
    from reasonloop.monitoring.eval_run import EvalRun, log_eval_run
    from reasonloop.monitoring.runs import baseline_run_id, run_results
    from reasonloop.providers import build_embedder, build_judge, build_reasoner, build_tracker, open_serving_index
    from reasonloop.retrieval.record_sets import load_questions

    started = time.perf_counter()
    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)
    results, summary = eval_results(settings, embedder, index)
    quality = evaluate_retrieval({"eval": load_questions(settings.questions.path)}, index.retriever)
    reasoner = build_reasoner(settings, embedder, index)
    safety = run_safety_suite(reasoner, settings.llm.limits(), load_safety_cases(settings.safety))
    tracker = build_tracker(settings)
    baseline = baseline_run_id(tracker)
    gate = check_regression(settings.gate, baseline, run_results(tracker, baseline) if baseline else [], results,
                            safety)
    return log_eval_run(tracker, EvalRun(
        reasoner=reasoner, judge_version=build_judge(settings, embedder).version, index=index.manifest,
        summary=summary, quality=quality, results=results, gate=gate, safety=safety,
        duration_s=time.perf_counter() - started, identity="", llm=settings.llm, judge=settings.judge,
        retrieval=settings.retrieval, review=settings.review, questions_path=settings.questions.path,
        log_traces=settings.mlflow.log_traces))


def bench_eval_overhead(settings: Any, rounds: int) -> dict[str, Any]:
    """Flow wall time / plain wall time for the whole nightly eval (best of `rounds`, memo cleared each time)."""
    from flows.nightly_eval import nightly_eval
    from reasonloop.providers import build_embedder

    embedder = build_embedder(settings)
    plain, flow = [], []
    for _ in range(rounds):
        embedder.clear_memo()
        plain.append(timed(lambda: plain_eval(settings))[0])
        embedder.clear_memo()
        seconds, report = timed(lambda: nightly_eval(settings))
        flow.append(seconds)
    n = int(report.metrics["n_questions"])
    ratio = min(flow) / min(plain)
    return {"questions": n, "plain_s": min(plain), "flow_s": min(flow), "plain_runs_s": plain, "flow_runs_s": flow,
            "per_question_overhead_ms": 1000 * (min(flow) - min(plain)) / n, "ratio": ratio,
            "accuracy": report.metrics["accuracy"], "target": "<= 1.25", "passed": ratio <= 1.25}


def write_results(out: Path, sections: dict[str, Any], lines: list[str], part: str = "") -> None:
    """Merge `sections` into <out>.json (keeping other benchmarks' sections), write the markdown `lines` to
    <out>[-part].md and print them."""
    markdown = "\n".join(lines) + "\n"
    path = out.with_suffix(".json")
    merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps({**merged, **sections}, indent=2), encoding="utf-8")
    (out.parent / f"{out.name}{'-' + part if part else ''}.md").write_text(markdown, encoding="utf-8")
    print(markdown)  # noqa: T201 - a script's report


def write_report(results: dict[str, Any], out: Path) -> None:
    e, o, i, lc = results["embedding"], results["eval_overhead"], results["incremental"], results["langchain"]
    lines = [
        f"# reasonloop benchmarks ({results['dataset']})", "",
        "| benchmark | measured | ratio | target | pass |", "|---|---|---|---|---|",
        f"| reindex flow vs its bare encoder ({e['chunks']} chunks) | {e['flow_chunks_per_s']:.2f} vs "
        f"{e['encoder_chunks_per_s']:.2f} chunks/s | {e['ratio']:.3f} | {e['target']} | {e['passed']} |",
        f"| reindex flow vs SentenceTransformer.encode, same batch size | {e['flow_chunks_per_s']:.2f} vs "
        f"{e['library_chunks_per_s']:.2f} chunks/s | {e['ratio_vs_library']:.3f} | (info) | |",
        f"| nightly eval flow vs plain functions ({o['questions']} questions) | {o['flow_s']:.1f} s vs "
        f"{o['plain_s']:.1f} s ({o['per_question_overhead_ms']:.1f} ms/question) | {o['ratio']:.3f} | "
        f"{o['target']} | {o['passed']} |",
        f"| reindex of the unchanged corpus vs full reindex | {i['unchanged_s']:.1f} s vs {i['full_s']:.1f} s | "
        f"{i['ratio']:.3f} | {i['target']} | {i['passed']} |",
        f"| reindex flow vs LangChain Chroma.from_documents ({lc['chunks']} chunks) | {lc['reindex_flow_s']:.1f} s "
        f"vs {lc['langchain_s']:.1f} s | {lc['speedup']:.3f}x | {lc['target']} | {lc['passed']} |",
        "", "encoder chunks/s by batch size (configured: "
        f"{results['batch_sizes']['configured']}): "
        + ", ".join(f"{k}: {v:.1f}" for k, v in results["batch_sizes"]["chunks_per_s"].items()),
        "", f"machine: {results['machine']}",
    ]
    write_results(out, results, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paragraphs", type=int, default=0, help="SQuAD paragraphs to index (0: all 2,067)")
    parser.add_argument("--questions", type=int, default=200, help="questions for the eval benchmark")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of the eval comparison (best of)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()

    from reasonloop.settings import apply_environment, load_settings

    work = Path(tempfile.mkdtemp(prefix="reasonloop-bench-"))
    corpus_dir, questions, dataset = write_dataset(work, args.paragraphs, args.questions)
    settings = load_settings(state_dir=work / "state", corpus={"path": corpus_dir}, questions={"path": questions},
                             quality={"datasets": {"squad_sample": {"questions": questions}}},
                             cache={"enabled": False, "checkpoint": False})  # every eval round asks afresh
    apply_environment(settings)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

    from flows.reindex import reindex

    warm = load_settings(state_dir=work / "warm", corpus={"path": ROOT / "data" / "corpus"})
    reindex(warm)  # start Prefect's server, import everything, load the model: not part of any ratio
    from reasonloop.providers import build_tracker

    for kind in ("reindex", "nightly-eval"):  # create the MLflow store once, as any second run finds it
        build_tracker(settings).ensure_experiment(kind)
    results = {"dataset": dataset, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
               "batch_sizes": bench_batch_sizes(settings), "embedding": bench_embedding(settings)}
    results["incremental"] = bench_incremental(settings, results["embedding"]["reindex_flow_s"])
    results["langchain"] = bench_langchain(settings, results["embedding"]["reindex_flow_s"])
    results["eval_overhead"] = bench_eval_overhead(settings, args.rounds)
    write_report(results, args.out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
