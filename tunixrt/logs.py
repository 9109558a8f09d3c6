"""Log set-up for the command-line entry points: tunixrt's own messages at INFO, the
chatter of the libraries it drives kept down to warnings, and no password of a URL in
any line a handler writes (console or log file)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tunixrt.registry.urls import mask_text

# orbax logs every file it writes at INFO through absl; jax logs each backend it probes
# and does not find (TPU on every GPU or CPU machine); alembic logs its plugins as they
# load.
NOISY = ("absl", "jax._src.xla_bridge", "alembic")


def quiet_libraries() -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def _masked(record: logging.LogRecord) -> logging.LogRecord:
    """The record with every URL password in its message and traceback shown as ***."""
    message = record.getMessage()
    masked = mask_text(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
    return record


def mask_secrets_in_logs() -> None:
    """Mask passwords in every log record this process creates, whichever logger and
    handler it goes to: a launcher logging a job's overrides, a traceback. Done where
    records are made, since Hydra replaces the handlers for each job and launch."""
    factory = logging.getLogRecordFactory()
    if factory in _MASKING:
        return

    def masking(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _masked(factory(*args, **kwargs))

    _MASKING.add(masking)
    logging.setLogRecordFactory(masking)


_MASKING: set[Callable[..., logging.LogRecord]] = set()  # the factories installed here
