"""``featctl embed``: a catalogue (or a SQL query) becomes a text feature set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from featctl.cli import app
from featctl.cli.common import JsonOption, LockTimeoutOption, StoreOption, console, err_console, print_json
from featctl.pipeline.config import DEFAULT_ENCODER, EmbedConfig, EmbedResult
from featctl.pipeline.runner import embed as run_embed
from featctl.pipeline.sources import SourceSpec


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


@app.command(epilog="Example: featctl embed --source data/anime.tsv --text '{name}. {tags}. {summary}'")
def embed(
    source: Optional[Path] = typer.Option(None, "--source", "-s", help="TSV, CSV, Parquet or JSONL file."),
    sql: Optional[str] = typer.Option(None, "--sql", help="A DuckDB query over files, instead of --source."),
    format: Optional[str] = typer.Option(None, "--format", help="tsv|csv|parquet|jsonl (default: by extension)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of TSV/CSV files."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column (default: the first column)."),
    text: Optional[str] = typer.Option(None, "--text", help="Template with {column} placeholders "
                                       "(default: every text column as 'column: value' lines)."),
    name: Optional[str] = typer.Option(None, "--name", help="Feature set name (default: ENTITY_text)."),
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
    replace: bool = typer.Option(False, "--replace", help="Rebuild the set even if its recipe changed."),
    lock_timeout: float = LockTimeoutOption,
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Embed the text of a catalogue into a feature set, encoding only what is not stored yet."""
    options = {"batch_size": batch_size, "max_length": max_length, "normalize": normalize,
               "device": device, "prompt": prompt, "query_prompt": query_prompt}
    config = EmbedConfig(
        source=SourceSpec(path=str(source) if source else None, sql=sql, format=format, encoding=encoding),
        store=store, encoder=encoder, encoder_options={k: v for k, v in options.items() if v is not None},
        id_column=id_column, text=text, name=name, entity=entity, dtype=dtype,
        on_duplicate=on_duplicate, part_rows=part_rows, replace=replace, lock_timeout=lock_timeout,
    )
    bar = _Bar()
    try:
        result = run_embed(config, progress=bar)
    finally:
        bar.close()
    print_json(result.to_dict()) if json else console.print(summary_line(result), soft_wrap=True)


def summary_line(result: EmbedResult) -> str:
    reasons = ", ".join(f"{reason}: {n}" for reason, n in result.failures.items())
    failed = f"{result.failed} failed" + (f" ({reasons})" if reasons else "")
    reused = f" ({result.reused} copied from identical texts)" if result.reused else ""
    return (f"{result.set}: {result.rows} rows — {result.encoded} encoded{reused}, {result.skipped} skipped, "
            f"{failed} in {result.seconds:.1f} s → {result.store}/features/{result.set}")
