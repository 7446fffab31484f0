"""``featctl embed``: a catalogue (or a SQL query) becomes a text feature set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from featctl.cli import app
from featctl.cli.common import JsonOption, LockTimeoutOption, StoreOption, console, err_console, print_json
from featctl.pipeline.batch_api import embed_batch
from featctl.pipeline.config import DEFAULT_ENCODER, EmbedConfig, EmbedResult
from featctl.pipeline.estimate import Estimate, estimate
from featctl.pipeline.runner import embed as run_embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.fs import display, join


class _Bar:
    """A rich progress bar with rows/s and ETA, drawn on stderr only when it is a terminal."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn(), console=err_console, transient=True,
                            disable=not err_console.is_terminal)
        self.task = self.bar.add_task("encode", total=None, rate="")

    def start(self, total: int) -> None:
        self.bar.start()
        self.bar.update(self.task, total=total)

    def advance(self, rows: int) -> None:
        self.bar.advance(self.task, rows)
        speed = self.bar.tasks[0].speed
        self.bar.update(self.task, rate=f"{speed:,.1f} rows/s" if speed else "")

    def close(self) -> None:
        self.bar.stop()


@app.command(epilog="Example: featctl embed --source data/anime.tsv --text '{name}. {tags}. {summary}'"
             "  |  on Ray: featctl embed --source items.parquet --engine ray --workers 4 --gpus-per-worker 1")
def embed(
    source: Optional[Path] = typer.Option(None, "--source", "-s", help="TSV, CSV, Parquet or JSONL file."),
    sql: Optional[str] = typer.Option(None, "--sql", help="A DuckDB query over files, instead of --source."),
    format: Optional[str] = typer.Option(None, "--format", help="tsv|csv|parquet|jsonl (default: by extension)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of TSV/CSV files."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column (default: the first column)."),
    text: Optional[str] = typer.Option(None, "--text", help="Template with {column} placeholders "
                                       "(default: every text column as 'column: value' lines)."),
    image: Optional[str] = typer.Option(None, "--image", help="Column of image paths: embed the images "
                                        "(with an image encoder such as clip:openai/clip-vit-base-patch32)."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Folder image paths are relative to "
                                              "(default: the source file's folder)."),
    max_image_bytes: int = typer.Option(20 << 20, "--max-image-bytes", help="Larger files fail as over the size cap."),
    name: Optional[str] = typer.Option(None, "--name", help="Feature set name (default: ENTITY_text or ENTITY_image)."),
    entity: str = typer.Option("item", "--entity", help="item|user."),
    encoder: str = typer.Option(DEFAULT_ENCODER, "--encoder", "-e", help="Encoder spec, e.g. st:BAAI/bge-m3."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Texts per model call (default 32)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Max tokens (BGE-M3 default 8192)."),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise (default on)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto|cpu|cuda|cuda:1|mps (default auto)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prefix for stored texts, e.g. 'passage: '."),
    query_prompt: Optional[str] = typer.Option(None, "--query-prompt", help="Prefix for queries, e.g. 'query: '."),
    dtype: str = typer.Option("float32", "--dtype", help="float32|float16 (half the size on disk)."),
    on_duplicate: str = typer.Option("error", "--on-duplicate", help="error|first|last for repeated ids."),
    part_rows: int = typer.Option(10_000, "--part-rows", help="Rows per committed part."),
    dimensions: Optional[int] = typer.Option(None, "--dimensions", help="openai: v3 models' shortened size."),
    long_text: Optional[str] = typer.Option(None, "--long-text", help="openai: average|truncate texts over "
                                            "8191 tokens (default average of chunks)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: a compatible server "
                                           "(default $OPENAI_BASE_URL, else OpenAI)."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="openai: file holding the key "
                                                "(default $OPENAI_API_KEY)."),
    rpm: Optional[float] = typer.Option(None, "--rpm", help="openai: requests per minute to stay under."),
    tpm: Optional[float] = typer.Option(None, "--tpm", help="openai: tokens per minute to stay under."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="openai: requests in flight (default 4)."),
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", help="openai: tries per request "
                                               "before its rows are recorded as failed (default 6)."),
    max_batch_inputs: Optional[int] = typer.Option(None, "--max-batch-inputs", help="openai: inputs per "
                                                   "request (default 2048)."),
    max_batch_tokens: Optional[int] = typer.Option(None, "--max-batch-tokens", help="openai: tokens per "
                                                   "request (default 300000)."),
    price: Optional[float] = typer.Option(None, "--price", help="openai: USD per 1M tokens, for the estimate."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count rows, tokens, requests and cost; send nothing."),
    batch_api: bool = typer.Option(False, "--batch-api", help="openai: submit through the Batch API (half price)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="--batch-api: submit and return; a rerun ingests."),
    poll: float = typer.Option(30.0, "--poll", help="--batch-api: seconds between status checks."),
    replace: bool = typer.Option(False, "--replace", help="Rebuild the set even if its recipe changed."),
    engine: str = typer.Option("local", "--engine", help="local|ray: encode in this process, or on Ray Data "
                               "(pip install 'featctl[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="ray: auto|HOST:6379, a cluster this "
                                              "machine can join (default: start a local Ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="ray: encoder actors, each loads the model "
                                          "once (default 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="ray: GPUs per actor "
                                                    "(default 0; fractions share a GPU)."),
    lock_timeout: float = LockTimeoutOption,
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Embed the text of a catalogue into a feature set, encoding only what is not stored yet."""
    options = {"batch_size": batch_size, "max_length": max_length, "normalize": normalize,
               "device": device, "prompt": prompt, "query_prompt": query_prompt, "dimensions": dimensions,
               "long_text": long_text, "base_url": base_url, "api_key_file": api_key_file, "rpm": rpm, "tpm": tpm,
               "concurrency": concurrency, "max_attempts": max_attempts, "max_inputs": max_batch_inputs,
               "max_tokens": max_batch_tokens, "price": price}
    config = EmbedConfig(
        source=SourceSpec(path=str(source) if source else None, sql=sql, format=format, encoding=encoding),
        store=store, encoder=encoder, encoder_options={k: v for k, v in options.items() if v is not None},
        id_column=id_column, text=text, image=image, image_root=str(image_root) if image_root else None,
        max_image_bytes=max_image_bytes, name=name, entity=entity, dtype=dtype,
        on_duplicate=on_duplicate, part_rows=part_rows, replace=replace, lock_timeout=lock_timeout,
        engine=engine, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
    )
    if dry_run:
        plan = estimate(config, batch_api=batch_api)
        print_json(plan.to_dict()) if json else console.print(estimate_text(plan), soft_wrap=True)
        return
    bar = _Bar()
    try:
        result = (embed_batch(config, wait=not no_wait, poll_seconds=poll, progress=bar) if batch_api
                  else run_embed(config, progress=bar))
    finally:
        bar.close()
    print_json(result.to_dict()) if json else console.print(summary_line(result), soft_wrap=True)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 5400 else f"{seconds / 3600:,.1f} h"


def estimate_text(plan: Estimate) -> str:
    lines = [f"{plan.set} with {plan.encoder} (dry run: nothing sent)",
             f"  rows {plan.rows:,}: {plan.stored:,} already stored, {plan.to_encode:,} to encode",
             f"  texts {plan.unique_texts:,} distinct: {plan.copied:,} copied from the store, "
             f"{plan.texts_to_send:,} to send ({plan.empty:,} empty rows never sent)"]
    if plan.in_batches:
        lines.append(f"  {plan.in_batches:,} texts wait in batches already submitted: collect them with --batch-api")
    if plan.tokens is not None:
        lines.append(f"  tokens {plan.tokens:,} in {plural(plan.requests, 'request')}"
                     + (f" ({plan.long_texts:,} texts over the per-input limit)" if plan.long_texts else ""))
        via = " through the Batch API (half price)" if plan.batch_api else ""
        lines.append(f"  cost ${plan.cost_usd:,.4f} at ${plan.price_per_million:g} per 1M tokens{via}"
                     if plan.cost_usd is not None else "  cost unknown: pass --price (USD per 1M tokens)")
        if plan.batch_api:
            lines.append("  time: within the Batch API's 24 h window")
        else:
            lines.append(f"  time about {duration(plan.minutes * 60)} at the given limits" if plan.minutes is not None
                         else "  time not estimated: pass --tpm and --rpm (your account's limits)")
    return "\n".join(lines)


def summary_line(result: EmbedResult) -> str:
    reasons = ", ".join(f"{reason}: {n}" for reason, n in result.failures.items())
    failed = f"{result.failed} failed" + (f" ({reasons})" if reasons else "")
    reused = f" ({result.reused} copied from identical {result.input}s)" if result.reused else ""
    spent = ""
    if usage := result.usage:
        cost = usage.get("cost_usd")
        sent = [f"{plural(usage['requests'], 'request')} with {usage.get('tokens', 0):,} tokens"
                if usage.get("requests") else "",
                f"{usage['batch_tokens']:,} tokens through the Batch API" if usage.get("batch_tokens") else ""]
        spent = "; " + ", ".join(s for s in sent if s) + (f", ${cost:.4f}" if cost is not None else "")
    pending = f"; {result.pending_batches} batch(es) pending: run again to ingest" if result.pending_batches else ""
    folder = display(join(result.store, "features", result.set))
    return (f"{result.set}: {result.rows} rows — {result.encoded} encoded{reused}, {result.skipped} skipped, "
            f"{failed} in {result.seconds:.1f} s{spent}{pending} → {folder}")
