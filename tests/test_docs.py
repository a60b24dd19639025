"""The documentation a new user reads stays true to the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from docqa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _fields(model: type[BaseModel], prefix: str = "DOCQA_"):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}", field


def test_every_setting_says_what_it_does():
    undocumented = [env for env, field in _fields(Settings) if not field.description]
    assert undocumented == []


def test_configuration_reference_is_generated_from_the_current_settings():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_doc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Start here")
    assert readme.index("make run") > start and readme.index("make test") > start
    assert "make test" in (ROOT / ".ci" / "run").read_text()
