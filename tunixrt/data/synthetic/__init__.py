"""Synthetic reasoning datasets: task-family generators, the file writer, the tokenizer.

`build` writes a dataset such as datasets/dev-reasoning (train/valid traces, eval items,
manifest); `train_tokenizer` trains its BPE tokenizer afterwards. Each task family is a
function `(rng, difficulty) -> Problem`, registered by name in `FAMILIES`.
"""

from tunixrt.data.synthetic.build import FAMILIES, build
from tunixrt.data.synthetic.common import Problem
from tunixrt.data.synthetic.tokenizer import train_tokenizer

__all__ = ["FAMILIES", "Problem", "build", "train_tokenizer"]
