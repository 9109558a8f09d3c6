"""Post-training objectives: GRPO (`grpo.py`) and DPO (`dpo.py`), built on the token
log-probabilities of `logprobs.py`. Pure functions of arrays, so each piece is checked
against a hand computation (tests/test_algorithm_losses.py)."""
