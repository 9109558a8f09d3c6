"""Resume rules and signal handling, without training."""

from __future__ import annotations

import os
import signal

import pytest

from tunixrt.config import ConfigError


def test_identity_keys_and_diff_messages():
    from tunixrt.train.resume import check_compatible, identity, identity_hash

    saved = {
        "model": {"dim": 64},
        "trainer": {"max_steps": 10, "batch_size": 4},
        "checkpoint": {"keep": 3},
        "run": {"name": "a"},
    }
    longer = {
        **saved,
        "trainer": {"max_steps": 99, "batch_size": 4},
        "checkpoint": {"keep": 9},
        "run": {"name": "b"},
    }
    assert identity(saved) == {"model.dim": 64, "trainer.batch_size": 4}
    assert identity_hash(saved) == identity_hash(longer)
    check_compatible(saved, longer, "here")  # cadence and length may change
    with pytest.raises(ConfigError, match="model.dim: checkpoint has 64, this run has 32"):
        check_compatible(saved, {**saved, "model": {"dim": 32}}, "here")


def test_second_signal_aborts_at_once():
    from tunixrt.train.signals import StopRequest

    # Python's default handler, or SIG_IGN when a shell started the suite in the background
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_keys_a_checkpoint_predates_count_as_their_defaults():
    """A checkpoint saved before a key existed (model.qk_norm here) resumes when the run
    keeps that key's default, and not when it changes it."""
    from tunixrt.composition import compose
    from tunixrt.config import validate
    from tunixrt.train.resume import check_compatible, with_defaults
    from tunixrt.train.run import config_dict

    now = config_dict(validate(compose(["debug=fast"])))
    saved = {**now, "model": {k: v for k, v in now["model"].items() if k != "qk_norm"}}
    check_compatible(with_defaults(saved), now, "here")
    with pytest.raises(ConfigError, match="model.qk_norm: checkpoint has '<absent>'"):
        check_compatible(saved, now, "here")
    changed = {**now, "model": {**now["model"], "qk_norm": True}}
    with pytest.raises(ConfigError, match="model.qk_norm: checkpoint has False, this run has True"):
        check_compatible(with_defaults(saved), changed, "here")
