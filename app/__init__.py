"""The composition root: one place that builds every stage's parts from the settings.

It sits above the stages (ingestion, retrieval, inference, evals) and below the entry
points (api, cli, dags), which hold one `Docqa` and call the stages through its parts.
"""

from app.container import Docqa

__all__ = ["Docqa"]
