"""The encoder contract: state a dimension and a recipe, turn a batch of inputs into vectors.

The runner owns batching, ordering, retries and writing; an encoder only encodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from featctl.errors import EncoderOptionError


class Encoder(ABC):
    """Turns a batch of inputs into a float32 matrix of shape (len(inputs), dim).

    Subclasses set ``recipe`` when constructed (everything that changes the vectors: model,
    revision, normalisation, max length, prompt...) without loading weights, expose ``dim``
    (which may load them) and implement :meth:`encode`.
    """

    prefix: ClassVar[str]
    modality: ClassVar[str] = "text"
    options: ClassVar[Mapping[str, Callable[[str], Any]]] = {}

    dim: int
    recipe: dict[str, Any]
    batch_size: int = 32

    @abstractmethod
    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        """Vectors for ``inputs``, in the same order."""

    @classmethod
    def parse_options(cls, raw: Mapping[str, object]) -> dict[str, Any]:
        """Options as typed values; unknown names fail with the list of known ones."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in cls.options:
                known = ", ".join(sorted(cls.options)) or "none"
                raise EncoderOptionError(
                    f"encoder '{cls.prefix}:' has no option '{key}'; its options: {known}"
                )
            try:
                out[key] = cls.options[key](value if isinstance(value, str) else str(value))
            except ValueError as exc:
                raise EncoderOptionError(f"encoder option {key}={value!r} is invalid: {exc}") from None
        return out


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("expected a positive integer")
    return number
