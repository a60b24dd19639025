"""The embedding model as int8 ONNX, run by onnxruntime: same vectors within a cosine of
~0.994, a few times faster on CPU (AVX-512 VNNI), and torch never runs (nor loads the model).

The ONNX file is exported locally from the sentence-transformers folder (never
downloaded) on first use, its BERT graph fused (`_fuse`), quantised (dynamic int8, per
channel; a model the optimiser cannot fuse keeps its feed-forward output projections in
fp32: see `_sensitive_nodes`) and kept under
`cache_dir`, named by the model folder's contents, so every process and every restart
reuses it. Only models that mean-pool and normalise (all-MiniLM-L6-v2 and most
sentence-transformers) are supported; others keep `DOCQA_EMBEDDING__BACKEND=torch`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from docqa.errors import ConfigurationError
from docqa.settings import EmbeddingSettings
from ingestion.embed import TokenizedEmbedder, pool_spans, resolve_model, unit_rows

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Chunks a forward pass when embedding.batch_size is unset: measured fastest on CPU.
INT8_BATCH = 8
# Changes whenever export_int8 would make a different file (part of the file name).
_RECIPE = "v3"


def _folder_digest(folder: Path) -> str:
    """Names the export after what it was made from (file names, sizes, modification times)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def export_int8(model_folder: Path, target: Path) -> Path:
    """Export the transformer of a sentence-transformers folder to ONNX and quantise it to
    int8 at `target` (written atomically; a concurrent export by another process is waited
    for, not repeated)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return target
        with _quiet_export():
            return _export_int8(model_folder, target)


@contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter's tracer warnings, the quantiser's advice (on the root logger) and the
    weight-loading bar say nothing a docqa user can act on."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export_int8(model_folder: Path, target: Path) -> Path:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_folder))
    # eager attention traces to a plain graph (the SDPA path bakes in shape checks)
    model = AutoModel.from_pretrained(str(model_folder), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state

    sample = tokenizer(["an example", "another example text"], padding=True, return_tensors="pt")
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        int8 = Path(tmp) / "model-int8.onnx"
        with torch.no_grad():
            torch.onnx.export(
                LastHiddenState(model),
                tuple(sample[name] for name in _INPUTS),
                str(fp32),
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={
                    name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")
                },
                opset_version=17,
                dynamo=False,
            )
        fused = Path(tmp) / "model-fused.onnx"
        source, exclude = fp32, _sensitive_nodes(fp32)
        if _fuse(fp32, model.config, fused):
            source, exclude = fused, []
        quantize_dynamic(
            str(source),
            str(int8),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=exclude,
            # The fused operators are outside ONNX's shape inference: their outputs are fp32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        os.replace(int8, target)
    return target


def _fuse(fp32: Path, config: Any, target: Path) -> bool:
    """Fuse a BERT-family graph with onnxruntime's transformer optimiser (one Attention
    operator per layer, embeddings + layer norm, bias + GELU, skip + layer norm): int8
    embedding runs ~1.25x faster than unfused. Fused, every MatMul can be quantised: on
    COVID-QA dev hit@5 0.776 against torch's 0.778 (unfused with the feed-forward outputs in
    fp32: 0.778, and slower; benchmarks/RESULTS.md). False, and nothing written, when the
    model is not one the optimiser fuses completely."""
    if getattr(config, "model_type", None) not in ("bert", "roberta", "xlm-roberta"):
        return False
    from onnxruntime.transformers import optimizer

    try:
        fused = optimizer.optimize_model(
            str(fp32),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
    except Exception:  # noqa: BLE001 - an optimiser failure leaves the plain graph, which works
        return False
    stats = fused.get_fused_operator_statistics()
    if stats.get("Attention", 0) != int(config.num_hidden_layers):
        return False
    fused.save_model_to_file(str(target))
    return True


def _sensitive_nodes(model: Path) -> list[str]:
    """The feed-forward output projections: their inputs (after GELU) have the widest
    range, and quantising them costs the most accuracy (mean cosine to fp32 0.994 with,
    0.997 without them on covidqa sentences) for a sixth of the MatMuls."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name
    ]


class OnnxInt8Embedder(TokenizedEmbedder):
    """The Embedder protocol over an int8 ONNX export of a sentence-transformers model."""

    def __init__(self, settings: EmbeddingSettings, cache_dir: Path) -> None:
        self.settings = settings
        self.load_path, self.model_id = resolve_model(settings.model)
        self.folder = Path(self.load_path)
        if not self.folder.is_dir():
            raise ConfigurationError(
                f"DOCQA_EMBEDDING__BACKEND=onnx-int8 needs a local model folder; "
                f"{settings.model!r} is not one (use backend torch)"
            )
        self.cache_dir = cache_dir
        self._lock = threading.Lock()

    @cached_property
    def _pooling(self) -> dict[str, Any]:
        try:
            modules = json.loads((self.folder / "modules.json").read_text())
            kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
            pooling = json.loads((self.folder / kinds["Pooling"] / "config.json").read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read the sentence-transformers layout of {self.folder}: {exc}"
            ) from exc
        if not pooling.get("pooling_mode_mean_tokens") or "Normalize" not in kinds:
            raise ConfigurationError(
                f"model {self.model_id} does not mean-pool and normalise; "
                "DOCQA_EMBEDDING__BACKEND=onnx-int8 supports only those (use torch)"
            )
        return dict(pooling)

    @cached_property
    def session(self) -> Any:
        import onnxruntime as ort

        name = f"{self.folder.name}-{_folder_digest(self.folder)}-int8-{_RECIPE}.onnx"
        target = self.cache_dir / name
        if not target.exists():
            export_int8(self.folder, target)
        options = ort.SessionOptions()
        # Busy-waiting worker threads steal the cores other requests and processes need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = min(4, os.cpu_count() or 1)
        return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder))

    @cached_property
    def _window(self) -> int:
        try:
            config = json.loads((self.folder / "sentence_bert_config.json").read_text())
            return int(config["max_seq_length"])
        except (OSError, KeyError, ValueError):
            return int(self.tokenizer.model_max_length)

    @cached_property
    def dimension(self) -> int:
        return int(self._pooling["word_embedding_dimension"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._forward(texts, None)[0]

    def embed_documents_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The `SentencePooling` protocol: chunk vectors, and per chunk the mean of each
        span's token outputs from the same forward pass (late pooling: each sentence read
        in its chunk's context)."""
        return self._forward(list(texts), spans)

    def _forward(
        self, texts: list[str], spans: Sequence[Sequence[tuple[int, int]]] | None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled = [np.zeros((len(s), self.dimension), dtype=np.float32) for s in spans or []]
        if not texts:
            return out, pooled
        # Batches of similar length pad little (what sentence-transformers does too).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        session, size = self.session, self.settings.batch_size or INT8_BATCH
        wanted = {i.name for i in session.get_inputs()}
        for start in range(0, len(texts), size):
            rows = order[start : start + size]
            enc = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self._window,
                return_tensors="np",
                return_offsets_mapping=spans is not None,
            )
            feed = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in wanted}
            if "token_type_ids" in wanted and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            with self._lock:
                hidden = session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = unit_rows(mean)
            if spans is not None:
                for r, i in enumerate(rows):
                    pooled[i] = pool_spans(hidden[r], enc["offset_mapping"][r], spans[i])
        return out, pooled
