"""The project's logger: one name, ``yolo_asff``, configured once by the entry points."""
from __future__ import annotations

import logging
import sys
from typing import Optional

LOGGER_NAME = "yolo_asff"

__all__ = ["LOGGER_NAME", "get_logger", "setup_logging"]


def get_logger(child: Optional[str] = None) -> logging.Logger:
    """The ``yolo_asff`` logger, or its child ``yolo_asff.<child>``."""
    return logging.getLogger(LOGGER_NAME if not child else f"{LOGGER_NAME}.{child}")


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is when a record is written.

    ``sys.stderr`` may be replaced after set-up (output capture in tests, a notebook's
    redirect); a handler that kept the old stream would write to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the live sys.stderr always wins
        pass


class _NoTracebackFormatter(logging.Formatter):
    """One line per record on the terminal: a logged exception's traceback goes to the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


def setup_logging(level: int = logging.INFO, log_file: Optional[str] = None) -> logging.Logger:
    """Send the project's log records to stderr (and to ``log_file``), once; returns the logger."""
    logger = get_logger()
    logger.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if not any(getattr(h, "_yolo_asff", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_NoTracebackFormatter(fmt._fmt, fmt.datefmt))
        handler._yolo_asff = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger
