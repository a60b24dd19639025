"""Write docs/configuration.md from the settings tree, so the docs cannot drift from the code.

.venv/bin/python scripts/settings_doc.py          # rewrite the file
.venv/bin/python scripts/settings_doc.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docqa.settings import Settings  # noqa: E402

TARGET = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration

Every setting is an environment variable starting with `DOCQA_`. Nested settings use a
double underscore (`DOCQA_API__PORT=9000`). Lists and objects are written as JSON
(`DOCQA_VLLM__URLS='["http://gpu1:8000"]'`). The CLI's global flags (`--data-dir`,
`--chroma-url`, `--database-url`) and `serve --host/--port` override the environment.
Defaults run everything on one machine with no servers.

This file is generated from `docqa/settings.py` by `scripts/settings_doc.py`.
"""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    text = "(unset)" if value is None else str(value)
    return f"`{text}`" if text else '`""`'


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        env = f"{prefix}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{env}__")  # a section inside a section
            continue
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append((env, _default(field), description))
    return rows


def render() -> str:
    out = [HEADER]
    out.append("\n## General\n\n| variable | default | what it does |\n|---|---|---|")
    out += [f"| `{e}` | {d} | {t} |" for e, d, t in _rows(Settings, "DOCQA_")]
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.append(f"\n## {name}\n\n| variable | default | what it does |\n|---|---|---|")
            rows = _rows(annotation, f"DOCQA_{name.upper()}__")
            out += [f"| `{e}` | {d} | {t} |" for e, d, t in rows]
    return "\n".join(out) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run .venv/bin/python scripts/settings_doc.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
