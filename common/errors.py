"""One error type for bad user input.

Library code raises :class:`UserError` with a one-line message that names the
flag or file at fault. Entry points catch it (see :func:`exit_on_user_error`)
and print ``error: <message>`` instead of a traceback, exiting with status 2
as argparse does.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """Bad input from the user: a flag, a file or a data layout. One line."""


def exit_on_user_error(fn: F) -> F:
    """Decorate a CLI ``main``: a :class:`UserError` becomes one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
