"""Errors raised by the reports room."""

from __future__ import annotations

from typing import Literal

__all__ = ["ReportError", "ReportErrorKind", "SummariserError", "TextEncoderError"]

#: Why a report file was refused.
ReportErrorKind = Literal["not_found", "not_a_file", "empty", "binary", "too_large", "unreadable"]


class ReportError(ValueError):
    """A report file that cannot be read as a report.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    kind : {"not_found", "not_a_file", "empty", "binary", "too_large", "unreadable"}
        Machine-readable reason, kept as :attr:`kind`.
    path : str, optional
        The offending file, kept as :attr:`path`.
    """

    def __init__(self, message: str, *, kind: ReportErrorKind, path: str | None = None) -> None:
        super().__init__(message)
        self.kind: ReportErrorKind = kind
        self.path = path


class SummariserError(RuntimeError):
    """A summariser that cannot be built (missing or unloadable local model)."""


class TextEncoderError(RuntimeError):
    """A text encoder that cannot be built (missing package, path or model files)."""
