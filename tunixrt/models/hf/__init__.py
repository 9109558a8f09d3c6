"""Hugging Face checkpoints in and out: config.json and safetensors, no pickle.

`load_pretrained(path)` reads a local checkpoint folder of a supported family into a
`Decoder`; `save_pretrained(model, path)` writes one that
`transformers.AutoModelForCausalLM.from_pretrained` loads with the same logits.
"""

from tunixrt.models.hf.configs import SUPPORTED, CheckpointError, decoder_config, hf_config
from tunixrt.models.hf.io import TOKENIZER_FILES, load_pretrained, read_config, save_pretrained

__all__ = [
    "SUPPORTED",
    "TOKENIZER_FILES",
    "CheckpointError",
    "decoder_config",
    "hf_config",
    "load_pretrained",
    "read_config",
    "save_pretrained",
]
