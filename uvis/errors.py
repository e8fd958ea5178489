"""Exceptions of UVIS Studio.

Every error a user can cause (bad input, missing weights, missing optional package)
derives from :class:`UvisError` and carries a message that names the offending file,
field or value and says what to do. The CLI maps :class:`BadInputError` to exit code 2.
"""
from __future__ import annotations


class UvisError(Exception):
    """Base class of all errors raised on purpose by UVIS Studio."""


class BadInputError(UvisError, ValueError):
    """The user's input (file, config value, JSON) is wrong. CLI exit code 2."""


class ConfigError(BadInputError):
    """A configuration value is invalid; the message names the field and the rule."""


class MissingWeightsError(BadInputError):
    """Model weights are not available (offline, not cached); says which file and how to get it."""


class MissingDependencyError(UvisError, ImportError):
    """An optional package is not installed; the message names the install command."""


def require(module: str, install: str):
    """Import an optional module or raise :class:`MissingDependencyError`.

    Args:
        module: dotted module name, e.g. ``"fiftyone"``.
        install: the command that installs it, e.g. ``"pip install fiftyone"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingDependencyError(
            f"optional package '{module}' is not installed ({exc}); install it with: {install}"
        ) from exc
