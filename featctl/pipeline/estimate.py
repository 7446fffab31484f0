"""``featctl embed --dry-run``: what a run would send and cost, without calling any model or API.

The plan is the real run's own (same scan, same diff against the store, same token counting and
request packing), read without the writer lock and without writing anything.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from featctl.encoders.base import StreamingEncoder
from featctl.pipeline.batch_api import BATCH_DISCOUNT
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import plan_against, prepare
from featctl.stores.batches import pending_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    set: str
    encoder: str
    rows: int              # distinct ids in the source
    stored: int            # rows whose content is already stored: skipped
    to_encode: int         # rows the run would encode
    unique_texts: int      # distinct non-empty texts among them
    copied: int            # of those, texts stored under another id: copied, not sent
    empty: int             # rows with an empty text: recorded as failed, never sent
    texts_to_send: int
    in_batches: int = 0    # texts in submitted batches not collected yet: paid for, never sent again
    tokens: int | None = None
    requests: int | None = None
    long_texts: int | None = None      # texts over the per-input token limit
    price_per_million: float | None = None
    cost_usd: float | None = None
    minutes: float | None = None       # at the given --rpm/--tpm; None without limits
    batch_api: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(config: EmbedConfig, *, batch_api: bool = False) -> Estimate:
    """Count what :func:`featctl.pipeline.runner.embed` would send for ``config``."""
    if batch_api:
        config.check_batch_api()
    job = prepare(config)
    plan, _, _ = plan_against(job, job.store.load_manifest()["sets"].get(job.name))
    pending = set().union(*(b.digests() for b in pending_batches(job.store.root, job.name)
                            if b.recipe_hash == job.digest))
    seen: set[str] = set()
    empty = copied = in_batches = 0
    texts: list[tuple[str, str]] = []
    for _, digest, text in job.rows(plan):
        if not text.strip():
            empty += 1
        elif digest not in seen:
            seen.add(digest)
            if digest in plan.stored:
                copied += 1
            elif digest in pending:
                in_batches += 1
            else:
                texts.append((digest, text))
    counts = dict(set=job.name, encoder=config.encoder, rows=plan.rows, stored=plan.skipped,
                  to_encode=len(plan.todo), unique_texts=len(seen), copied=copied, empty=empty,
                  texts_to_send=len(texts), batch_api=batch_api, in_batches=in_batches)
    encoder = job.encoder
    if not isinstance(encoder, StreamingEncoder) or not hasattr(encoder, "plan"):
        return Estimate(**counts)  # a local model: no tokens to pay for
    tokens = requests = 0
    long_texts: set[str] = set()
    for request in encoder.plan(texts):
        requests += 1
        tokens += sum(p.tokens for p in request)
        long_texts.update(p.key for p in request if p.chunks > 1 or not isinstance(p.payload, str))
    price = encoder.price
    cost = None if price is None else tokens * price / 1e6 * (BATCH_DISCOUNT if batch_api else 1.0)
    limits = [n / limit for n, limit in ((tokens, encoder.limiter.tpm), (requests, encoder.limiter.rpm)) if limit]
    minutes = max(limits) if limits and not batch_api else None
    return Estimate(**counts, tokens=tokens, requests=requests, long_texts=len(long_texts),
                    price_per_million=price, cost_usd=cost, minutes=minutes)
