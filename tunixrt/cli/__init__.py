"""Command-line entry points: `tunixrt-train` (Hydra) and `tunixrt` (subcommands)."""
