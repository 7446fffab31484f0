"""``featctl train`` and ``featctl ablate``: recommenders trained on the store's features, with honest metrics."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from featctl.cli import app
from featctl.cli.common import JsonOption, LockTimeoutOption, StoreOption, console, err_console, print_json

if TYPE_CHECKING:  # the trainers import torch: only the commands that train pay for it
    from featctl.models.ablate import AblationResult
    from featctl.models.train import TrainConfig, TrainResult

_O = typer.Option
INTERACTIONS = _O(..., "--interactions", "-i", help="Interaction log (TSV/CSV/Parquet/JSONL).")
USER_COL = _O("user_id", "--user-col", help="User id column.")
ITEM_COL = _O("item_id", "--item-col", help="Item id column.")
RATING_COL = _O(None, "--rating-col", help="Rating column (with --min-rating).")
MIN_RATING = _O(None, "--min-rating", help="Keep interactions rated at least this, e.g. 4.")
TIME_COL = _O(None, "--time-col", help="Time column (needed by --split temporal).")
K_CORE = _O(0, "--k-core", help="Drop users and items with fewer interactions than this, repeatedly.")
FORMAT = _O(None, "--interactions-format", help="tsv, csv, parquet or jsonl (default: from the extension).")
SPLIT = _O("random", "--split", help="random (80/10/10 per user), temporal (leave-one-out) or cold-item.")
SEED = _O(0, "--seed", help="Seed of the split, the sampling and the initial weights.")
ITEM_FEATURES = _O(None, "--item-features", help="Feature set of items (e.g. item_text).")
USER_FEATURES = _O(None, "--user-features", help="Feature set of users.")
MIN_COVERAGE = _O(0.9, "--min-coverage", help="Refuse to train when fewer interactions have features.")
TUNE = _O(False, "--tune-features", help="Fine-tune the feature vectors too (frozen by default).")
DIM = _O(64, "--dim", help="Embedding dimension.")
LAYERS = _O(2, "--layers", help="Propagation layers.")
LR = _O(1e-3, "--lr", help="Adam learning rate.")
REG = _O(1e-4, "--reg", help="L2 weight on the layer-0 embeddings of each batch.")
BATCH = _O(2048, "--batch", help="BPR triples per step.")
EPOCHS = _O(300, "--epochs", help="Most epochs to train.")
PATIENCE = _O(50, "--patience", help="Stop after this many evaluations without a better validation NDCG@20.")
EVAL_EVERY = _O(1, "--eval-every", help="Epochs between validations.")


def _config(model: str, interactions: Path, user_col: str, item_col: str, rating_col: Optional[str],
            min_rating: Optional[float], time_col: Optional[str], k_core: int, fmt: Optional[str], split: str,
            seed: int, item_features: Optional[str], user_features: Optional[str], min_coverage: float,
            tune_features: bool, dim: int, layers: int, lr: float, reg: float, batch: int, epochs: int,
            patience: int, eval_every: int, store: Optional[str], lock_timeout: float, fusion: str = "none",
            export: bool = False) -> TrainConfig:
    from featctl.models.data import InteractionsConfig
    from featctl.models.fit import Schedule
    from featctl.models.lightgcn import LightGCNParams
    from featctl.models.train import TrainConfig
    from featctl.pipeline.sources import SourceSpec

    source = SourceSpec(str(interactions), format=fmt)
    return TrainConfig(
        model=model, store=store, split=split, seed=seed, item_features=item_features, user_features=user_features,
        min_coverage=min_coverage, export=export, lock_timeout=lock_timeout,
        interactions=InteractionsConfig(source, user_col, item_col, rating_col, min_rating, time_col, k_core),
        lightgcn=LightGCNParams(dim, layers, lr, reg, batch, fusion, tune_features),
        schedule=Schedule(epochs, patience, eval_every, seed))


@app.command(epilog="Example: featctl train lightgcn -i data/interactions.tsv --item-features item_text "
                    "--fusion concat  (baselines: featctl train ease -i data/interactions.tsv)")
def train(
    model: str = typer.Argument(..., help="lightgcn, or a baseline: pop, itemknn, ease, content."),
    interactions: Path = INTERACTIONS, user_col: str = USER_COL, item_col: str = ITEM_COL,
    rating_col: Optional[str] = RATING_COL, min_rating: Optional[float] = MIN_RATING,
    time_col: Optional[str] = TIME_COL, k_core: int = K_CORE, fmt: Optional[str] = FORMAT,
    split: str = SPLIT, seed: int = SEED, item_features: Optional[str] = ITEM_FEATURES,
    user_features: Optional[str] = USER_FEATURES,
    fusion: str = _O("none", "--fusion", help="How features join the ID embeddings: none, sum, concat or gate."),
    min_coverage: float = MIN_COVERAGE, tune_features: bool = TUNE, dim: int = DIM, layers: int = LAYERS,
    lr: float = LR, reg: float = REG, batch: int = BATCH, epochs: int = EPOCHS, patience: int = PATIENCE,
    eval_every: int = EVAL_EVERY,
    export: bool = _O(False, "--export", help="Write the learned embeddings into the store (<model>_item, _user)."),
    store: Optional[str] = StoreOption, lock_timeout: float = LockTimeoutOption, json: bool = JsonOption,
) -> None:
    """Train a recommender on the store's features; evaluate it with full ranking on all, warm and cold items."""
    from featctl.models.train import train as run_train

    config = _config(model, interactions, user_col, item_col, rating_col, min_rating, time_col, k_core, fmt, split,
                     seed, item_features, user_features, min_coverage, tune_features, dim, layers, lr, reg, batch,
                     epochs, patience, eval_every, store, lock_timeout, fusion, export)
    with _progress(config.schedule.epochs if model == "lightgcn" else 0) as on_epoch:
        result = run_train(config, on_epoch)
    if json:
        print_json(result.to_dict())
        return
    _render(result)


@app.command(epilog="Example: featctl ablate lightgcn -i interactions.tsv --item-features item_text "
                    "--user-features user_text")
def ablate(
    model: str = typer.Argument("lightgcn", help="The model whose fusion is ablated (lightgcn)."),
    interactions: Path = INTERACTIONS, user_col: str = USER_COL, item_col: str = ITEM_COL,
    rating_col: Optional[str] = RATING_COL, min_rating: Optional[float] = MIN_RATING,
    time_col: Optional[str] = TIME_COL, k_core: int = K_CORE, fmt: Optional[str] = FORMAT,
    split: str = SPLIT, seed: int = SEED, item_features: Optional[str] = ITEM_FEATURES,
    user_features: Optional[str] = USER_FEATURES,
    fusions: str = _O("sum,concat,gate", "--fusions", help="Fusion modes to compare."),
    min_coverage: float = MIN_COVERAGE, tune_features: bool = TUNE, dim: int = DIM, layers: int = LAYERS,
    lr: float = LR, reg: float = REG, batch: int = BATCH, epochs: int = EPOCHS, patience: int = PATIENCE,
    eval_every: int = EVAL_EVERY, store: Optional[str] = StoreOption, lock_timeout: float = LockTimeoutOption,
    json: bool = JsonOption,
) -> None:
    """Train LightGCN for each fusion mode × feature side (none, item, user, both) and print one table."""
    from featctl.models.ablate import AblateConfig
    from featctl.models.ablate import ablate as run_ablate

    base = _config(model, interactions, user_col, item_col, rating_col, min_rating, time_col, k_core, fmt, split,
                   seed, item_features, user_features, min_coverage, tune_features, dim, layers, lr, reg, batch,
                   epochs, patience, eval_every, store, lock_timeout)
    config = AblateConfig(base, tuple(f.strip() for f in fusions.split(",") if f.strip()))
    result = run_ablate(config, lambda fusion, side, r: err_console.print(
        f"{fusion}/{side}: recall@20 {r.metrics['all']['recall@20']:.4f} (run {r.run})", markup=False))
    if json:
        print_json(result.to_dict())
        return
    _render_ablation(result)


def _progress(epochs: int) -> Any:
    if not epochs or not err_console.is_terminal:
        return nullcontext(None)
    progress = Progress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console, transient=True)

    class _Bar:
        def __enter__(self) -> Any:
            progress.start()
            task = progress.add_task("train", total=epochs, info="")
            return lambda epoch, loss, ndcg: progress.update(
                task, completed=epoch, info=f"loss {loss:.4f}" + (f" · valid ndcg@20 {ndcg:.4f}" if ndcg else ""))

        def __exit__(self, *exc: object) -> None:
            progress.stop()

    return _Bar()


def _render(result: TrainResult) -> None:
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    d = result.data
    console.print(f"run {result.run} · {result.model} · {d['users']:,} users × {d['items']:,} items · split "
                  f"{d['split']}: {d['train']:,} train / {d['valid']:,} valid / {d['test']:,} test"
                  + (f" · {d['users_without_test']:,} users without test interactions skipped"
                     if d["users_without_test"] else ""), markup=False)
    for f in result.features:
        console.print(f"features {f['set']} ({f['entity']}, {f['dim']}-d): {f['interactions_covered']:,} of "
                      f"{f['interactions']:,} interactions covered; {f['missing_ids']:,} of {f['ids']:,} ids use "
                      "the learned missing vector", markup=False)
    t = result.training
    if "best_epoch" in t:
        console.print(f"trained {t['epochs']} epochs ({t['epoch_seconds_mean']:.3f} s each), best validation "
                      f"ndcg@20 {t['best_valid_ndcg@20']} at epoch {t['best_epoch']}", markup=False)
    groups = [g for g in ("all", "warm", "cold") if result.metrics.get(g)]
    table = Table(title="test metrics (full ranking)", title_justify="left")
    table.add_column("metric")
    for group in groups:
        table.add_column(f"{group} ({result.metrics[group]['users']:,} users)", justify="right")
    kinds = ("recall", "ndcg", "hit", "precision", "auc")
    names = sorted((k for k in result.metrics[groups[0]] if k != "users"), key=lambda k: (
        kinds.index(k.split("@")[0]), int(k.split("@")[1]) if "@" in k else 0)) if groups else []
    for name in names:
        table.add_row(name, *(f"{result.metrics[g][name]:.4f}" for g in groups))
    console.print(table)
    for name in result.exported:
        console.print(f"exported {name} (featctl neighbors {name} --id ...)", markup=False)


def _render_ablation(result: AblationResult) -> None:
    table = Table(title=f"lightgcn ablation (test, full ranking) · run {result.run}", title_justify="left")
    for column in ("fusion", "features", "recall@20", "ndcg@20", "cold recall@20", "cold ndcg@20", "run"):
        table.add_column(column, justify="left" if column in ("fusion", "features", "run") else "right")
    for row in result.rows:
        cold = row["metrics"].get("cold") or {}
        table.add_row(row["fusion"], row["features"], f"{row['metrics']['all']['recall@20']:.4f}",
                      f"{row['metrics']['all']['ndcg@20']:.4f}",
                      f"{cold['recall@20']:.4f}" if cold else "–", f"{cold['ndcg@20']:.4f}" if cold else "–",
                      row["run"])
    console.print(table)
    for note in result.skipped:
        console.print(f"skipped {note}", markup=False)
