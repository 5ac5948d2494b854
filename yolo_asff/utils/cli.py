"""What the command-line tools share: the error a user can fix, reported without a traceback."""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(RuntimeError):
    """A problem with the command line or its files; printed as ``error: ...``, exit status 2.

    Raised for things the user can fix (a missing file, a bad option, weights that do not fit
    the config), so that the tool's ``main`` can tell them from bugs, which keep their traceback.
    """
