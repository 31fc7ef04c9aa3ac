"""Errors raised on bad user input.

Every message says what was wrong (with the offending value and file), what is allowed, and how to fix it.
"""


class GigasslError(Exception):
    """Base class of the errors that name a user-fixable problem."""


class SlideError(GigasslError):
    """A slide cannot be used: unreadable, not pyramidal, no MPP, no tissue, ..."""


class ManifestError(GigasslError):
    """A manifest, label table or split file is malformed or inconsistent."""


class ConfigError(GigasslError):
    """A parameter has a value outside what is allowed."""


class DataError(GigasslError):
    """An array read from a file or given in memory is not what its format promises: another shape or dtype, or
    NaN / infinite values (:mod:`gigassl.validate`). In a batch it is a listed failure of that slide."""


class UserCodeError(ConfigError):
    """The user's code (an encoder ``module:factory``) raised or returned something other than what gigassl
    expects; the message names the factory, what it returned and what was expected. A batch stops on it: every
    slide would fail the same way."""


class DeviceError(GigasslError):
    """The accelerator failed (out of memory, a device-side error): a problem of the run, not of one slide, so a
    batch stops instead of listing every slide as failed."""


def suggest(message: str, *fixes: str) -> str:
    """Format ``message`` followed by a bullet list of fixes (TRIDENT-style suggestions)."""
    if not fixes:
        return message
    return message + "\n" + "\n".join(f"  - {fix}" for fix in fixes)


def listing(items, show: int = 5) -> str:
    """Items for a message: the first ``show`` and how many more.

    >>> listing(["a", "b", "c"], show=2)
    'a, b and 1 more'
    """
    items = list(items)
    return ", ".join(map(str, items[:show])) + (f" and {len(items) - show} more" if len(items) > show else "")


def format_ids(ids, show: int = 10) -> str:
    """Slide (or case) ids for a message: their count, the first ``show`` (quoted) and how many more.

    >>> format_ids(["a", "b", "c"], show=2)
    "3: 'a', 'b' and 1 more"
    """
    ids = list(ids)
    return f"{len(ids)}: {listing(map(repr, ids), show)}"
