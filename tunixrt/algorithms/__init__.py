"""Post-training objectives. The losses are pure functions, each checked against a hand
computation (tests/test_algorithm_losses.py): GRPO's (`grpo.py`) and DPO's (`dpo.py`),
on the token log-probabilities of `logprobs.py`. Around them: groups of sampled
completions and their layout (`rollout.py`), their rewards (`rewards.py`), the prompts a
run samples for (`prompts.py`) and a step's sampled, scored groups (`sampling.py`),
GRPO's compiled step (`grpo_update.py`), preference pairs from a file or ranked from
sampled groups (`preferences.py`), the frozen reference (`reference.py`), and the steps
the training loop runs for algorithm=grpo and dpo (`grpo_trainer.py`, `dpo_trainer.py`
and, for pairs made on policy, `dpo_online.py`; the interface is `trainer.py`'s
AlgorithmStep)."""
