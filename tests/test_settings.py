"""The settings tree as users write it: env vars, lists, blanks, and the messages for mistakes."""

from __future__ import annotations

import pytest

from docqa.errors import ConfigurationError
from docqa.settings import load_settings


def test_list_settings_take_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_VLLM__URLS", "http://g1:8001, http://g2:8001")
    monkeypatch.setenv("DOCQA_VLLM__LINK_ALLOWLIST", '["example.org"]')
    settings = load_settings()
    assert settings.vllm.urls == ["http://g1:8001", "http://g2:8001"]
    assert settings.vllm.link_allowlist == ["example.org"]


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_CHROMA_URL", "")
    monkeypatch.setenv("DOCQA_AIRFLOW__URL", "  ")
    settings = load_settings()
    assert settings.chroma_url is None
    assert settings.airflow.url is None


def test_single_underscore_names_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_AIRFLOW_URL", "http://airflow:8080")
    monkeypatch.setenv("DOCQA_AIRFLOW__TIMEOUT_S", "3")
    monkeypatch.setenv("DOCQA_VLLM_URLS", "http://g1:8001,http://g2:8001")
    settings = load_settings()
    assert settings.airflow.url == "http://airflow:8080"
    assert settings.airflow.timeout_s == 3
    assert settings.vllm.urls == ["http://g1:8001", "http://g2:8001"]


def test_double_underscore_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_VLLM_URLS", "http://old:8001")
    monkeypatch.setenv("DOCQA_VLLM__URLS", "http://new:8001")
    assert load_settings().vllm.urls == ["http://new:8001"]


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_VLLM_URLS", "ftp://g1")
    with pytest.raises(ConfigurationError, match=r"DOCQA_VLLM__URLS: .*not an http\(s\) URL"):
        load_settings()
