"""The int8 ONNX backend: exported locally, kept on disk, vectors close to torch's."""

from __future__ import annotations

import numpy as np
import pytest

from docqa.errors import ConfigurationError
from docqa.settings import load_settings
from ingestion.embed import SentenceTransformerEmbedder
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
def test_int8_vectors_agree_with_torch_and_the_export_is_reused(onnx_dir):
    settings = load_settings(embedding={"backend": "onnx-int8"}).embedding
    embedder = SentenceTransformerEmbedder(load_settings(embedding={"backend": "torch"}).embedding)
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


def test_int8_is_the_default_on_cpu_and_a_gpu_means_torch():
    assert load_settings().embedding.backend == "onnx-int8"
    # Asking for a GPU without naming a backend gets the one that runs there.
    assert load_settings(embedding={"device": "cuda"}).embedding.backend == "torch"
    with pytest.raises(ConfigurationError, match="DOCQA_EMBEDDING__BACKEND=torch"):
        load_settings(embedding={"device": "cuda", "backend": "onnx-int8"})


def test_a_precision_asked_for_means_torch_and_float16_is_refused_on_a_cpu():
    assert load_settings(embedding={"dtype": "bfloat16"}).embedding.backend == "torch"
    with pytest.raises(ConfigurationError, match="DOCQA_EMBEDDING__BACKEND=torch"):
        load_settings(embedding={"dtype": "bfloat16", "backend": "onnx-int8"})
    with pytest.raises(ConfigurationError, match="float16 is for GPUs"):
        load_settings(embedding={"dtype": "float16"})
    assert load_settings(embedding={"dtype": "float16", "device": "cuda"}).embedding.backend == (
        "torch"
    )


@pytest.mark.slow
def test_bfloat16_vectors_agree_with_float32_and_stay_unit_length():
    fp32 = SentenceTransformerEmbedder(load_settings(embedding={"backend": "torch"}).embedding)
    bf16 = SentenceTransformerEmbedder(load_settings(embedding={"dtype": "bfloat16"}).embedding)
    ours, reference = bf16.embed_documents(TEXTS), fp32.embed_documents(TEXTS)
    assert str(next(bf16.model.parameters()).dtype) == "torch.bfloat16"
    assert ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert np.min(np.sum(ours * reference, axis=1)) > 0.99
    assert int(np.argmax(ours[:3] @ bf16.embed_query(TEXTS[3]))) == 0


def test_exports_are_shared_by_data_folders_unless_the_cache_cannot_be_written(
    tmp_path, monkeypatch
):
    from app.container import build_embedder, model_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = load_settings(data_dir=tmp_path / "one")
    two = load_settings(data_dir=tmp_path / "two")
    assert model_cache_dir(one) == model_cache_dir(two) == tmp_path / "cache" / "docqa" / "models"
    assert build_embedder(one).cache_dir == tmp_path / "cache" / "docqa" / "models"

    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert model_cache_dir(one) == tmp_path / "one" / "models"
    explicit = load_settings(embedding={"onnx_dir": str(tmp_path / "x")})
    assert build_embedder(explicit).cache_dir == tmp_path / "x"
