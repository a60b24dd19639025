"""docqa: question answering over an organisation's own documents.

This small package holds what every stage shares: settings, domain types and errors.
The stages themselves live in the top-level packages named on the design card
(`ingestion`, `retrieval`, `inference`, `api`, `evals`, `dags`).
"""

from docqa.offline import enforce_offline

__version__ = "0.1.0"

# Every stage imports docqa first, so the libraries it loads later (transformers,
# chromadb, unstructured) see the offline switches before their own import-time checks.
enforce_offline()
