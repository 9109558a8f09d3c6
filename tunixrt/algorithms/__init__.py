"""Post-training objectives: GRPO (`grpo.py`) and DPO (`dpo.py`), built on the token
log-probabilities of `logprobs.py`, the groups of sampled completions and their
layout (`rollout.py`), their rewards (`rewards.py`), and GRPO's compiled step with its
frozen reference (`grpo_update.py`). Not yet an `algorithm` of the training loop. Pure functions, so each piece is checked against a hand computation
(tests/test_algorithm_losses.py)."""
