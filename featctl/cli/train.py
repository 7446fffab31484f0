"""``featctl train`` and ``featctl ablate``: recommenders trained on the store's features, with honest metrics."""

from __future__ import annotations

import dataclasses
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
IMAGE_FEATURES = _O(None, "--image-features", help="mmgnn, moe: image feature set of items (e.g. item_image).")
MODALITIES = _O(None, "--modalities", help="mmgnn, moe: which of id,text,image to use (default: id and every "
                                           "set given; text is --item-features).")
ITEMS = _O(None, "--items", help="mmgnn: catalogue file holding the --item-tags column.")
ITEMS_ID_COL = _O(None, "--items-id-col", help="Item id column of --items (default: --item-col).")
ITEM_TAGS = _O(None, "--item-tags", help="mmgnn: a column of comma-separated tags (genres) in --items.")
DIM = _O(64, "--dim", help="Embedding dimension.")
LAYERS = _O(2, "--layers", help="Propagation layers (lightgcn, mmgnn); self-attention blocks (moe).")
LR = _O(1e-3, "--lr", help="Adam learning rate.")
REG = _O(1e-4, "--reg", help="L2 weight on the layer-0 embeddings of each batch (lightgcn, mmgnn).")
BATCH = _O(None, "--batch", help="BPR triples per step (default 2048); moe: sequences per step (default 128).")
ITEM_GRAPH = _O(True, "--item-graph/--no-item-graph", help="mmgnn: the per-item feature-interaction graph.")
ATTENTION = _O(True, "--attention/--no-attention", help="mmgnn: self-attention across an item's fields.")
GRAPH_LAYERS = _O(2, "--graph-layers", help="mmgnn: GNN layers over each item's graph.")
GRAPH_REG = _O(1e-3, "--graph-reg", help="mmgnn: weight of the generated graphs' sparsity penalty.")
HEADS = _O(2, "--heads", help="mmgnn, moe: attention heads.")
SUB_EXPERTS = _O(1, "--sub-experts", help="moe: experts per modality, under their own gate.")
NEGATIVES = _O(256, "--negatives", help="moe: sampled negatives per step (sampled softmax).")
BALANCE = _O(0.01, "--balance", help="moe: weight of the gates' load-balancing loss.")
MAX_LEN = _O(50, "--max-len", help="moe: most recent items a user's sequence keeps.")
DROPOUT = _O(0.2, "--dropout", help="moe: dropout in the self-attention blocks.")
EPOCHS = _O(300, "--epochs", help="Most epochs to train.")
PATIENCE = _O(50, "--patience", help="Stop after this many evaluations without a better validation NDCG@20.")
EVAL_EVERY = _O(1, "--eval-every", help="Epochs between validations.")


def _config(model: str, interactions: Path, user_col: str, item_col: str, rating_col: Optional[str],
            min_rating: Optional[float], time_col: Optional[str], k_core: int, fmt: Optional[str], split: str,
            seed: int, item_features: Optional[str], user_features: Optional[str], image_features: Optional[str],
            modalities: Optional[str], items: Optional[Path], items_id_col: Optional[str], item_tags: Optional[str],
            min_coverage: float, tune_features: bool, dim: int, layers: int, lr: float, reg: float,
            batch: Optional[int], item_graph: bool, attention: bool, graph_layers: int, graph_reg: float, heads: int,
            sub_experts: int, negatives: int, balance: float, max_len: int, dropout: float, epochs: int,
            patience: int, eval_every: int, store: Optional[str], lock_timeout: float, fusion: str = "none",
            export: bool = False) -> TrainConfig:
    from featctl.errors import TrainInputError
    from featctl.models.data import InteractionsConfig
    from featctl.models.fit import Schedule
    from featctl.models.lightgcn import LightGCNParams
    from featctl.models.mmgnn import MMGNNParams
    from featctl.models.modalities import TagsConfig
    from featctl.models.moe import MoEParams
    from featctl.models.train import TrainConfig
    from featctl.pipeline.sources import SourceSpec

    if bool(items) != bool(item_tags) or (items_id_col and not items):
        raise TrainInputError("--item-tags (and --items-id-col) name columns of the --items file; pass "
                              "--items FILE --item-tags COL")
    tags = TagsConfig(SourceSpec(str(items)), item_tags, items_id_col or item_col) if items and item_tags else None
    return TrainConfig(
        model=model, store=store, split=split, seed=seed, item_features=item_features, user_features=user_features,
        image_features=image_features, modalities=modalities or (), tags=tags, min_coverage=min_coverage,
        export=export, lock_timeout=lock_timeout,
        interactions=InteractionsConfig(SourceSpec(str(interactions), format=fmt), user_col, item_col, rating_col,
                                        min_rating, time_col, k_core),
        **_params(model, {LightGCNParams: "lightgcn", MMGNNParams: "mmgnn", MoEParams: "moe"}, dict(
            dim=dim, layers=layers, lr=lr, reg=reg, batch=batch, fusion=fusion, tune_features=tune_features,
            item_graph=item_graph, attention=attention, graph_layers=graph_layers, heads=heads, graph_reg=graph_reg,
            max_len=max_len, dropout=dropout, negatives=negatives, sub_experts=sub_experts, balance=balance)),
        schedule=Schedule(epochs, patience, eval_every, seed))


def _params(model: str, classes: dict[type, str], values: dict[str, Any]) -> dict[str, Any]:
    """Each trained model's parameters: every option for ``model``'s own; for the others only the options
    ``model`` lacks that were changed, which ``train`` then reports unused. Shared options (--dim, --layers)
    are never checked against another model's rules: moe needs --layers 1 or more, lightgcn does not."""
    own = {f.name for cls, name in classes.items() if name == model for f in dataclasses.fields(cls)}
    params = {}
    for cls, name in classes.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in values}
        params[name] = cls(**{k: values[k] for k in defaults if values[k] is not None and (
            name == model or (k not in own and values[k] != defaults[k]))})
    return params


@app.command(epilog="Examples: featctl train lightgcn -i data/interactions.tsv --item-features item_text "
                    "--fusion concat · featctl train mmgnn -i ml/interactions.tsv --item-features item_text "
                    "--image-features item_image --items ml/items.tsv --item-tags genres · featctl train moe "
                    "-i ml/interactions.tsv --time-col timestamp --split temporal --item-features item_text")
def train(
    model: str = typer.Argument(..., help="lightgcn, mmgnn, moe, or a baseline: pop, itemknn, ease, content."),
    interactions: Path = INTERACTIONS, user_col: str = USER_COL, item_col: str = ITEM_COL,
    rating_col: Optional[str] = RATING_COL, min_rating: Optional[float] = MIN_RATING,
    time_col: Optional[str] = TIME_COL, k_core: int = K_CORE, fmt: Optional[str] = FORMAT,
    split: str = SPLIT, seed: int = SEED, item_features: Optional[str] = ITEM_FEATURES,
    user_features: Optional[str] = USER_FEATURES, image_features: Optional[str] = IMAGE_FEATURES,
    modalities: Optional[str] = MODALITIES, items: Optional[Path] = ITEMS, items_id_col: Optional[str] = ITEMS_ID_COL,
    item_tags: Optional[str] = ITEM_TAGS,
    fusion: str = _O("none", "--fusion", help="lightgcn: how features join the IDs: none, sum, concat or gate."),
    min_coverage: float = MIN_COVERAGE, tune_features: bool = TUNE, dim: int = DIM, layers: int = LAYERS,
    lr: float = LR, reg: float = REG, batch: Optional[int] = BATCH, item_graph: bool = ITEM_GRAPH,
    attention: bool = ATTENTION, graph_layers: int = GRAPH_LAYERS, graph_reg: float = GRAPH_REG, heads: int = HEADS,
    sub_experts: int = SUB_EXPERTS, negatives: int = NEGATIVES, balance: float = BALANCE, max_len: int = MAX_LEN,
    dropout: float = DROPOUT, epochs: int = EPOCHS, patience: int = PATIENCE, eval_every: int = EVAL_EVERY,
    export: bool = _O(False, "--export", help="Write the learned embeddings into the store (<model>_item, _user)."),
    store: Optional[str] = StoreOption, lock_timeout: float = LockTimeoutOption, json: bool = JsonOption,
) -> None:
    """Train a recommender on the store's features; evaluate it with full ranking on all, warm and cold items."""
    options = {k: v for k, v in locals().items() if k != "json"}
    from featctl.models.train import TRAINED
    from featctl.models.train import train as run_train

    config = _config(**options)
    with _progress(config.schedule.epochs if model in TRAINED else 0) as on_epoch:
        result = run_train(config, on_epoch)
    if json:
        print_json(result.to_dict())
        return
    _render(result)


@app.command(epilog="Examples: featctl ablate lightgcn -i interactions.tsv --item-features item_text "
                    "--user-features user_text · featctl ablate mmgnn -i ml/interactions.tsv --item-features "
                    "item_text --image-features item_image --items ml/items.tsv --item-tags genres")
def ablate(
    model: str = typer.Argument("lightgcn", help="The model to ablate: lightgcn, mmgnn or moe."),
    interactions: Path = INTERACTIONS, user_col: str = USER_COL, item_col: str = ITEM_COL,
    rating_col: Optional[str] = RATING_COL, min_rating: Optional[float] = MIN_RATING,
    time_col: Optional[str] = TIME_COL, k_core: int = K_CORE, fmt: Optional[str] = FORMAT,
    split: str = SPLIT, seed: int = SEED, item_features: Optional[str] = ITEM_FEATURES,
    user_features: Optional[str] = USER_FEATURES, image_features: Optional[str] = IMAGE_FEATURES,
    modalities: Optional[str] = MODALITIES, items: Optional[Path] = ITEMS, items_id_col: Optional[str] = ITEMS_ID_COL,
    item_tags: Optional[str] = ITEM_TAGS,
    fusions: str = _O("sum,concat,gate", "--fusions", help="lightgcn: fusion modes to compare."),
    min_coverage: float = MIN_COVERAGE, tune_features: bool = TUNE, dim: int = DIM, layers: int = LAYERS,
    lr: float = LR, reg: float = REG, batch: Optional[int] = BATCH, item_graph: bool = ITEM_GRAPH,
    attention: bool = ATTENTION, graph_layers: int = GRAPH_LAYERS, graph_reg: float = GRAPH_REG, heads: int = HEADS,
    sub_experts: int = SUB_EXPERTS, negatives: int = NEGATIVES, balance: float = BALANCE, max_len: int = MAX_LEN,
    dropout: float = DROPOUT, epochs: int = EPOCHS, patience: int = PATIENCE, eval_every: int = EVAL_EVERY,
    store: Optional[str] = StoreOption, lock_timeout: float = LockTimeoutOption, json: bool = JsonOption,
) -> None:
    """Train a model once per switched-off part (lightgcn: fusion × feature side) and print one table."""
    options = {k: v for k, v in locals().items() if k not in ("json", "fusions")}
    from featctl.models.ablate import AblateConfig
    from featctl.models.ablate import ablate as run_ablate

    config = AblateConfig(_config(**options), tuple(f.strip() for f in fusions.split(",") if f.strip()))
    result = run_ablate(config, lambda label, r: err_console.print(
        f"{label}: recall@20 {r.metrics['all']['recall@20']:.4f} (run {r.run})", markup=False))
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
    for group, weights in (t.get("gate_weights") or {}).items():
        console.print(f"gate weights, {group} items: " + " · ".join(f"{m} {w:.3f}" for m, w in weights.items()),
                      markup=False)
    if graph := t.get("item_graph"):
        rows = [f"{a}→(" + ", ".join(f"{v:.2f}" for v in row) + ")" for a, row in zip(graph["fields"],
                                                                                      graph["mean_adjacency"])]
        console.print(f"item graphs over {', '.join(graph['fields'])}, mean edge weights: {' '.join(rows)}",
                      markup=False)
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
    table = Table(title=f"{result.model} ablation (test, full ranking) · run {result.run}", title_justify="left")
    for column in ("cell", "recall@20", "ndcg@20", "hit@10", "cold recall@20", "cold ndcg@20", "run"):
        table.add_column(column, justify="left" if column in ("cell", "run") else "right")
    for row in result.rows:
        every, cold = row["metrics"]["all"], row["metrics"].get("cold") or {}
        table.add_row(row["cell"], f"{every['recall@20']:.4f}", f"{every['ndcg@20']:.4f}", f"{every['hit@10']:.4f}",
                      f"{cold['recall@20']:.4f}" if cold else "–", f"{cold['ndcg@20']:.4f}" if cold else "–",
                      row["run"])
    console.print(table)
    for note in result.skipped:
        console.print(f"skipped {note}", markup=False)
