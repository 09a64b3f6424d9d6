"""``python -m components.ingest``: the raw stage under its former name (now ``components.stages.raw``).

Kept because users still type it; it is exactly ``python -m components.stages.raw`` (same options,
same one-line errors and exit codes).
"""

from __future__ import annotations

import sys

from components.base import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("components.stages.raw"))
