"""Same as `tunixrt-train`: python scripts/train.py [overrides...]."""

from tunixrt.cli.train import main

if __name__ == "__main__":
    main()
