"""The int8 ONNX backend: exported locally, kept on disk, vectors close to torch's."""

from __future__ import annotations

import numpy as np
import pytest

from docqa.settings import load_settings
from ingestion.onnx_embed import OnnxInt8Embedder

TEXTS = [
    "The median incubation period was five days in the Wuhan cohort.",
    "Quarterly revenue rose eight percent on strong software sales.",
    "Fire drills happen twice a year; assemble in the north car park.",
    "What is the incubation period of the virus?",
    "short",
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.mark.slow
def test_int8_vectors_agree_with_torch_and_the_export_is_reused(embedder, onnx_dir):
    settings = load_settings(embedding={"backend": "onnx-int8"}).embedding
    int8 = OnnxInt8Embedder(settings, onnx_dir)
    ours = int8.embed_documents(TEXTS)
    reference = embedder.embed_documents(TEXTS)

    assert ours.shape == reference.shape == (len(TEXTS), embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-4)
    assert np.min(np.sum(ours * reference, axis=1)) > 0.97
    # Rankings agree: the question finds the sentence that answers it.
    assert int(np.argmax(ours[:3] @ int8.embed_query(TEXTS[3]))) == 0
    assert int8.model_id == embedder.model_id and int8.max_tokens == embedder.max_tokens
    assert int8.count_tokens(TEXTS[0]) == embedder.count_tokens(TEXTS[0])

    exported = list(onnx_dir.glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again = OnnxInt8Embedder(settings, onnx_dir)
    np.testing.assert_allclose(again.embed_documents(TEXTS), ours, atol=1e-6)
    assert exported[0].stat().st_mtime_ns == stamp  # loaded, not exported again
    assert int8.embed_documents([]).shape == (0, embedder.dimension)
