"""Plain helpers the test modules import: paths, config composition, data, processes,
TensorBoard reading, tiny models, Hugging Face checkpoints and registry databases.

Fixtures stay in tests/conftest.py; these modules hold no fixtures. Keep this file
empty of imports: spawned registry workers import the package on start.
"""
