"""The registry's error type, and the one-line form of a database error."""

from tunixrt.errors import InputError
from tunixrt.registry.urls import mask_text


class RegistryError(InputError):
    """The registry cannot be opened or a lookup failed; the message says why and what
    to do, and never contains a password."""


def describe(err: BaseException) -> str:
    """One masked line naming a database error, without SQLAlchemy's echo of the SQL
    and its parameters."""
    orig = getattr(err, "orig", None) or err
    first = (str(orig).strip().splitlines() or [""])[0]
    return mask_text(f"{type(orig).__name__}: {first}")
