"""A log level for what a user should read that is no problem: ``note``, between INFO and WARNING.

The command line shows it by default (``note: ...``), as it shows warnings (``WARNING: ...``);
``-v`` adds INFO. Messages such as "3 training, 1 held-out samples" are notes, not warnings.
"""

from __future__ import annotations

import logging

__all__ = ["NOTE"]

NOTE = 25
logging.addLevelName(NOTE, "note")
