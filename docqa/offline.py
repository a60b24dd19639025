"""Keep third-party libraries from reaching the network at run time.

docqa runs where nothing may be downloaded: models and data come from installed packages.
Several libraries phone home (model hubs, telemetry, spaCy model downloads) unless told
not to, so these switches are set before any of them is imported.
"""

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    # tokenizers warns (and may deadlock) when a process forks after using its thread pool.
    "TOKENIZERS_PARALLELISM": "false",
}


def enforce_offline() -> None:
    """Set the offline and no-telemetry switches unless the operator set them already."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
