"""What the command-line tools share: one way to report the errors a user can fix.

Every tool's ``main`` is wrapped by :func:`tool_main`: a :class:`~yolo_asff.errors.YoloAsffError`
(a bad config key, a missing file, weights that do not fit, an output folder that cannot be used)
becomes one line ``error: ...`` on stderr and exit status 2, Ctrl-C exit status 130, and a bug keeps
its traceback so that it can be reported.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Optional, Sequence

from ..errors import YoloAsffError

__all__ = ["UserError", "tool_main"]

ToolMain = Callable[[Optional[Sequence[str]]], int]


class UserError(YoloAsffError, RuntimeError):
    """A problem with the command line or its files; printed as ``error: ...``, exit status 2."""


def tool_main(main: ToolMain) -> ToolMain:
    """Wrap a tool's ``main(argv) -> exit status`` so that user errors end in one line and status 2.

    ``KeyboardInterrupt`` (Ctrl-C, or a tool that saved its work after SIGTERM) ends with
    status 130 and the message the tool gave, if any.
    """

    @functools.wraps(main)
    def wrapped(argv: Optional[Sequence[str]] = None) -> int:
        try:
            return main(argv)
        except YoloAsffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            if exc.args:
                print(exc.args[0], file=sys.stderr)
            return 130

    return wrapped
