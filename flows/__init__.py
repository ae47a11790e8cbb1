"""Prefect flows: one per optimizer, plus evaluate and the nightly promote flow.

May import ``tasks`` and ``dspex``.
"""

import os

# Prefect reads these when first imported: no analytics from a library's embedded server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
