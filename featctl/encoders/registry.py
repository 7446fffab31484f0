"""Short encoder names (``st:``, ``openai:``, ``clip:``) mapped to classes.

Built-ins are declared in pyproject.toml under the ``featctl.encoders`` entry-point group,
exactly as a third-party plugin declares its own; :func:`register` adds one at run time.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from urllib.parse import parse_qsl

from featctl.encoders.base import Encoder
from featctl.errors import EncoderLoadError, UnknownEncoderError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "featctl.encoders"
_registered: dict[str, type[Encoder]] = {}


def register(prefix: str, cls: type[Encoder]) -> None:
    """Make ``prefix:MODEL`` specs build ``cls`` (overrides an entry point of the same name)."""
    _registered[prefix] = cls


def known_prefixes() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registered))


def encoder_class(prefix: str) -> type[Encoder]:
    if prefix in _registered:
        return _registered[prefix]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == prefix:
            try:
                return ep.load()
            except ImportError as exc:
                raise EncoderLoadError(
                    f"encoder '{prefix}:' needs a package that is not installed ({exc.name}); "
                    f"install it, e.g. pip install 'featctl[{prefix}]'"
                ) from None
    raise UnknownEncoderError(prefix + ":", known_prefixes())


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``st:BAAI/bge-m3?max_length=512`` → ("st", "BAAI/bge-m3", {"max_length": "512"})."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not prefix or not rest:
        raise UnknownEncoderError(spec, known_prefixes())
    model, _, query = rest.partition("?")
    return prefix, model, dict(parse_qsl(query, keep_blank_values=True))


def create_encoder(spec: str, **options: object) -> Encoder:
    """Build the encoder a spec names; keyword options override those in the spec's query."""
    prefix, model, from_spec = parse_spec(spec)
    cls = encoder_class(prefix)
    merged = {**from_spec, **{k: v for k, v in options.items() if v is not None}}
    return cls(model, **cls.parse_options(merged))
