"""Errors that the CLI turns into one readable line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class Nano2Error(Exception):
    """A user-facing error: the message is complete on its own and needs no traceback."""


class ConfigError(Nano2Error):
    """Bad input in a config or spec file: names the file, the field and what was expected."""

    def __init__(self, file: str | Path | None, field: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.field = field or None
        self.detail = message
        parts = [p for p in (self.file, self.field) if p]
        super().__init__(": ".join([*parts, message]))


class MissingManifestError(Nano2Error):
    """An artifact directory without the manifest.json that says what it holds."""
