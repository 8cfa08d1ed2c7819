"""reasonloop: the closed loop that keeps an LLM reasoning system production-grade.

The package mirrors the loop, each layer importing only the ones below it (a contract `lint-imports` checks):

    cli          the command line (runs the flows in ../flows)
    providers    the one factory: embedder, reasoner, judges, index, tracker built from the settings
    settings     the settings object, composed of each layer's sections, loaded and merged once
    ops          Prefect deployments, a local Prefect server, the corpus watch
    monitoring   MLflow runs (written and read back), drift, vitals
    feedback     feedback records -> preference datasets
    evaluation   judges, metrics, the gate, safety, review, canary
    reasoning    prompts, LLM calls, strategies, adaptive depth, the answer cache
    retrieval    sources, chunking, embeddings, Chroma, BM25, index versions, the retriever
    (leaves)     schemas, errors, text, validation, yaml_files, paths, recipes, progress, redact

`tasks/` wraps core functions as Prefect tasks (retries, caching, logging); `flows/` composes the tasks.
"""

__version__ = "0.1.0"
