"""Decoder-only language models."""

from tunixrt.models.decoder import Decoder, DecoderConfig, flops_per_token, num_params

__all__ = ["Decoder", "DecoderConfig", "flops_per_token", "num_params"]
