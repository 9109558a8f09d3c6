"""Log levels for the command-line entry points: tunixrt's own messages at INFO, and
the chatter of the libraries it drives kept down to warnings."""

from __future__ import annotations

import logging

# orbax logs every file it writes at INFO through absl; jax logs each backend it probes
# and does not find (TPU on every GPU or CPU machine); alembic logs its plugins as they
# load.
NOISY = ("absl", "jax._src.xla_bridge", "alembic")


def quiet_libraries() -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
