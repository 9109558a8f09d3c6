"""Post-training objectives. The losses are pure functions, each checked against a hand
computation (tests/test_algorithm_losses.py): GRPO's (`grpo.py`) and DPO's (`dpo.py`),
on the token log-probabilities of `logprobs.py`. Around them: groups of sampled
completions and their layout (`rollout.py`), their rewards (`rewards.py`), GRPO's
compiled step and frozen reference (`grpo_update.py`), the prompts a run samples for
(`prompts.py`), and the step the training loop runs for algorithm=grpo
(`grpo_trainer.py`). DPO is not yet an algorithm of the loop."""
