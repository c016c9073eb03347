"""What may name a place to probe from: one rule for the sites file's ``vantages`` and for
``badgateway worker --vantage NAME``, so that every place the file lists can be served.

A place names a queue (``probe@NAME``) and shows in every table of a diagnosis; ``here`` is the
asker's own view (a terminal's ``diagnose --from``), never a place of the file.
"""

from __future__ import annotations

import re

# The asker's own view: ``badgateway diagnose --from …`` probes from the terminal as well,
# under this name; when it alone fails, the failure is on the asker's side.
HERE = "here"

_PLACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
PLACE_NAME_RULE = "letters, digits, . _ -, at most 63, not 'here'"


def is_place_name(name: str) -> bool:
    """Whether ``name`` may name a place (``eu-west``, ``dc1.fra``)."""
    return bool(_PLACE_NAME.fullmatch(name)) and name != HERE
