"""What the command-line tools share: their parser, the options every tool has, and one way to end.

Every tool's ``main`` is wrapped by :func:`tool_main`: a :class:`~yolo_asff.errors.YoloAsffError`
(a bad config key, a missing file, weights that do not fit, an output folder that cannot be used)
becomes one line ``error: ...`` on stderr and exit status 2, Ctrl-C exit status 130, and a bug keeps
its traceback so that it can be reported. The ``yolo-asff`` command and ``tools/*.py`` both end in it
(:mod:`yolo_asff.cli`).
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, List, Optional, Sequence

from ..errors import YoloAsffError

__all__ = ["UserError", "add_config_arguments", "add_size_argument", "tool_main", "tool_parser"]

ToolMain = Callable[[Optional[Sequence[str]]], int]


class UserError(YoloAsffError, RuntimeError):
    """A problem with the command line or its files; printed as ``error: ...``, exit status 2."""


def tool_main(main: Callable[[List[str]], int]) -> ToolMain:
    """Wrap a tool's ``main(argv) -> exit status`` so that user errors end in one line and status 2.

    ``main`` always gets a list (``sys.argv[1:]`` when called without arguments), so that a tool can
    record its own command line. ``KeyboardInterrupt`` (Ctrl-C, or a tool that saved its work after
    SIGTERM) ends with status 130 and the message the tool gave, if any.
    """

    @functools.wraps(main)
    def wrapped(argv: Optional[Sequence[str]] = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else list(argv))
        except YoloAsffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            if exc.args:
                print(exc.args[0], file=sys.stderr)
            return 130

    return wrapped


def tool_parser(doc: Optional[str], **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of a tool whose module docstring ``doc`` is its ``--help`` text (kept as written)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser,
                         config_help: str = "config YAML or shipped config name (default: the checkpoint's own)",
                         example: str = "model.num_classes=20", required: bool = False) -> None:
    """``--config`` (a YAML file or a shipped config's name) and ``--opts KEY=VALUE ...`` overrides; the default
    help is that of the tools that take weights, whose checkpoints hold their own config."""
    parser.add_argument("--config", required=required, help=config_help)
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help=f"config overrides, e.g. {example}")


class _SizeAction(argparse.Action):
    """``--size S`` stores ``S``, ``--size H W`` stores ``[H, W]`` (more values are stored as given and refused
    by :func:`~yolo_asff.utils.sizes.parse_size` with a message naming ``--size``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def add_size_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--size S`` or ``--size H W``: an input size as :func:`~yolo_asff.utils.sizes.parse_size` takes it."""
    parser.add_argument("--size", type=int, nargs="+", metavar="S", action=_SizeAction,
                        help=f"input size: S, or H W (multiples of 32; default: {default})")
