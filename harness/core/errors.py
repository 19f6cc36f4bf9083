"""Errors a user can cause: reported as one line on stderr with exit code 2."""

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input or a missing resource; the message says what to do instead."""


def unknown(what: str, name: str, choices: Iterable[str]) -> str:
    """The message for a name that is not one of ``choices``: the nearest valid name
    first (a typo is the usual cause), then all of them."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (choose one of: {', '.join(choices)})"
