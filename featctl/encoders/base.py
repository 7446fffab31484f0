"""The encoder contract: state a dimension and a recipe, turn a batch of inputs into vectors.

The runner owns batching, ordering, retries and writing; an encoder only encodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from featctl.errors import EncoderCallError, EncoderOptionError


class Encoder(ABC):
    """Turns a batch of inputs into a float32 matrix of shape (len(inputs), dim).

    Subclasses set ``recipe`` when constructed (everything that changes the vectors: model,
    revision, normalisation, max length, prompt...) without loading weights, expose ``dim``
    (which may load them) and implement :meth:`encode`.
    """

    prefix: ClassVar[str]
    modality: ClassVar[str] = "text"
    inputs: ClassVar[tuple[str, ...]] = ("text",)  # what it can encode: "text", "image"
    options: ClassVar[Mapping[str, Callable[[str], Any]]] = {}

    dim: int
    recipe: dict[str, Any]
    batch_size: int = 32

    @abstractmethod
    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        """Vectors for ``inputs``, in the same order."""

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries; an image encoder answers with its text tower."""
        return self.encode(texts)

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


K = TypeVar("K", bound=Hashable)
Answer = tuple[K, "np.ndarray | None", "str | None"]  # (key, vector or None, failure reason or None)


class StreamingEncoder(Encoder):
    """An encoder that answers in many concurrent requests, such as a paid remote API.

    :meth:`stream` pulls texts lazily and yields answers as requests finish; it sends more only
    when the caller asks for the next answers, so whatever the caller does with an answer (commit
    it to the store) happens before more money is spent beyond the encoder's in-flight window.
    """

    commit_each_answer: ClassVar[bool] = True  # paid answers are committed at once; local ones by part

    @abstractmethod
    def stream(self, texts: Iterable[tuple[K, str]]) -> Iterator[list[Answer[K]]]:
        """Answers for ``(key, text)`` pairs, one list per finished request, in any order."""

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        """Vectors for ``inputs``; any failure raises, naming the first failed input's reason."""
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        for answers in self.stream(enumerate(inputs)):
            for i, vector, error in answers:
                if error is not None:
                    raise EncoderCallError(error)
                out[i] = vector
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


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("expected a positive number")
    return number


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value
    return parse
