"""The project's own errors: what a user can act on.

Every error the project raises on purpose for bad input, a missing piece or an unreachable server
derives from :class:`S2SError`; a command ends on one with its message and exit status 1, never a
traceback (``s2s.cli``). Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations


class S2SError(Exception):
    """An error whose message tells the user what was wrong, with which value, and what to do."""


class OptionError(S2SError, ValueError):
    """An option or argument that cannot work (names the option and the value)."""
