"""Text (and later image) → vectors: the encoder contract, the registry and the built-in encoders."""
