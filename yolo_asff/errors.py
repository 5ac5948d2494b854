"""The root of every error a user can cause, so that one place can report them all.

Each part of the package raises a subclass with a message that says what is wrong and what to
do, naming the file or config key: :class:`~yolo_asff.config.ConfigError` (configs),
:class:`~yolo_asff.data.records.DatasetError` (annotation files and pictures),
:class:`~yolo_asff.io.checkpoint.CheckpointError` (weights files),
:class:`~yolo_asff.engine.trainer.TrainingError` (a run that cannot go on),
:class:`~yolo_asff.engine.export.ExportError`, :class:`~yolo_asff.engine.benchmark.BenchmarkError`,
:class:`~yolo_asff.io.official.OfficialCheckpointError` and
:class:`~yolo_asff.utils.cli.UserError` (command-line arguments), and the general :class:`MissingFileError`,
:class:`InvalidInputError` and :class:`OutputError` (a file or folder that cannot be written). The command-line tools catch
:class:`YoloAsffError` in one wrapper (:func:`yolo_asff.utils.cli.tool_main`), print one line and
exit with status 2; anything else is a bug and keeps its traceback.

This module imports nothing from the package: every layer may raise these errors.
"""
from __future__ import annotations

__all__ = ["InvalidInputError", "MissingFileError", "OutputError", "YoloAsffError"]


class YoloAsffError(Exception):
    """Something the user can fix: a config key, a file, an option. The message says what and how."""


class OutputError(YoloAsffError, OSError):
    """A file or folder cannot be written where the user asked (a file in the way, no permission, disk full)."""


class MissingFileError(YoloAsffError, FileNotFoundError):
    """A file the user named (weights, a picture) does not exist."""


class InvalidInputError(YoloAsffError, ValueError):
    """A file or value the user gave is not what it must be (a picture OpenCV cannot decode, a bad size)."""
