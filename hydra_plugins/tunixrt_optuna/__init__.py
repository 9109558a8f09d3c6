"""tunixrt's Optuna sweeper for Hydra: `hydra/sweeper=tunixrt_optuna`.

A sweeper of tunixrt's own on Hydra's Sweeper API, because the published
hydra-optuna-sweeper pins optuna<3, whose SQL storage breaks on SQLAlchemy 2.
Studies live in SQL through optuna's RDBStorage, so a search stopped by a crash, a
signal or a scheduler continues when the same command runs again.

Hydra imports every public module of this package while it scans for plugins, at each
start of any Hydra app; optuna is therefore imported only inside the underscored
modules (which the scan skips), when a search actually runs.
"""
