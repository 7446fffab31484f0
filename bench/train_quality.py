"""Recommendation quality on MovieLens 100K: baselines, LightGCN (+ text), mmgnn and its ablations, moe.

Protocol (REFERENCE.md's RecBole protocol): rating >= 4 is a positive, seed 0, full ranking over all
items minus the user's training (and validation) items.

- random split (80/10/10 per user): pop, itemknn, ease, lightgcn (IDs), lightgcn + item text,
  lightgcn + item and user text;
- cold-item split (20% of the items held out entirely): pop, content (text similarity to the
  user's history), lightgcn (IDs), lightgcn + item text;
- mmgnn on both splits: full (ID + text + image fields, genre tags, item graph, attention); on the
  cold-item split also its ablations (no attention, no item graph, no tags, IDs only, IDs + text,
  IDs + image);
- temporal split (leave-one-out): moe over id, text and image against the same SASRec on IDs only
  (``--modalities id``), and (family ``moe-sub-experts``) moe with 4 sub-experts per modality.

mmgnn and moe train for at most ``--mm-epochs`` (150) with patience ``--mm-patience`` (20): an
epoch of either costs 5-7x one of LightGCN on this CPU.

Image features are the TMDB posters embedded with ``clip:`` through ``featctl embed --image``. No CLIP
weights can be downloaded here, so the encoder is a small CLIP of the real architecture with random
weights (tests/clip_model.py): its vectors are random projections of the pixels (colour, layout), not
semantics. With real weights (``clip:openai/clip-vit-base-patch32``) the same script measures the real
thing.

Item text is MiniLM (the shipped st:all-MiniLM-L6-v2) over "{title}. Genres: {genres}. {overview}",
user text over "Age {age}, {gender}, {occupation}", both embedded by featctl into the store the
trainers read. For each fused row the fusion (sum, concat, gate) with the best validation NDCG@20
(among cold items on the cold-item split) is kept, so the test set never chooses. Everything runs
through ``featctl.train``, as a user would.

Needs ../shared/data/movielens-100k (and movielens-100k-tmdb for overviews); without it the
benchmark says so and exits 0. Results go to bench/results/train_quality.json (git-ignored).

    python bench/train_quality.py [--epochs 300] [--patience 50] [--fusions sum,concat,gate]
                                  [--only mmgnn,moe] [--clip FOLDER] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "train_quality.json"
ITEM_TEXT = "{title}. Genres: {genres}. {overview}"
USER_TEXT = "Age {age}, {gender}, {occupation}"


def prepare(work: Path, clip: str | None) -> tuple[str, str, bool]:
    """MovieLens through featctl's adapter; item text, user text and (with the TMDB posters) item images
    embedded into a store. Returns (log, store, whether item_image exists). A rerun on the same ``--work``
    folder encodes nothing again."""
    import featctl
    from featctl.pipeline.datasets import prepare_dataset

    data = work / "ml-100k"
    prepared = prepare_dataset("movielens-100k", str(data), source=str(SHARED / "movielens-100k"))
    template = ITEM_TEXT if prepared.side_data else "{title}. Genres: {genres}."
    store = str(work / "store")
    started = time.perf_counter()
    items = featctl.SourceSpec(str(data / "items.tsv"))
    featctl.embed(featctl.EmbedConfig(source=items, store=store, name="item_text", id_column="item_id",
                                      text=template))
    featctl.embed(featctl.EmbedConfig(source=featctl.SourceSpec(str(data / "users.tsv")), store=store,
                                      name="user_text", entity="user", id_column="user_id", text=USER_TEXT))
    if prepared.side_data:
        folder = clip or str(_random_clip(work / "clip"))
        featctl.embed(featctl.EmbedConfig(source=items, store=store, name="item_image", id_column="item_id",
                                          image="poster", encoder=f"clip:{folder}"))
    print(f"embedded items ({template!r}), users{' and posters' if prepared.side_data else ''} in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return str(data / "interactions.tsv"), store, prepared.side_data


def _random_clip(folder: Path) -> Path:
    """A small CLIP of the real architecture with random weights (no weights can be downloaded here)."""
    if (folder / "config.json").is_file():
        return folder
    sys.path.insert(0, str(ROOT))
    import torch

    from tests.clip_model import save_random_clip

    torch.manual_seed(0)
    return save_random_clip(folder, projection_dim=128, image_size=96,
                            vision=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                        num_attention_heads=4, patch_size=16),
                            text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=2))


def run(config: Any) -> dict[str, Any]:
    from featctl.models.train import train

    result = train(config)
    watched = "cold" if config.split == "cold-item" else "all"  # what early stopping watched, too
    valid = ((result.valid or {}).get(watched) or {}).get("ndcg@20")
    return {"metrics": result.metrics, "valid_ndcg@20": valid,
            "run": result.run, "training": {k: v for k, v in result.training.items() if k != "valid_curve"}}


def best_fusion(base: Any, fusions: list[str], label: str) -> dict[str, Any]:
    """Train one model per fusion; keep the one with the best validation NDCG@20."""
    tried = {}
    group = "cold" if base.split == "cold-item" else "all"
    for fusion in fusions:
        config = dataclasses.replace(base, lightgcn=dataclasses.replace(base.lightgcn, fusion=fusion))
        tried[fusion] = run(config)
        print(f"  {label} fusion={fusion}: valid ndcg@20 {tried[fusion]['valid_ndcg@20']:.4f}", file=sys.stderr)
    chosen = max(tried, key=lambda f: tried[f]["valid_ndcg@20"] or 0.0)
    return {**tried[chosen], "fusion": chosen,
            "tried": {f: {"valid_ndcg@20": r["valid_ndcg@20"], "test_recall@20": r["metrics"][group]["recall@20"]}
                      for f, r in tried.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--fusions", default="sum,concat,gate")
    parser.add_argument("--splits", default="random,cold-item,temporal")
    parser.add_argument("--only", default="baselines,lightgcn,mmgnn,moe", help="families of rows to train")
    parser.add_argument("--clip", default=None, help="a CLIP folder or hub name for the posters (default: random)")
    parser.add_argument("--mm-epochs", type=int, default=150, help="most epochs of mmgnn and moe")
    parser.add_argument("--mm-patience", type=int, default=20, help="early-stopping patience of mmgnn and moe")
    parser.add_argument("--work", type=Path, default=None, help="keep the prepared data and store here")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go")
    args = parser.parse_args(argv)
    if not (SHARED / "movielens-100k" / "u.data").is_file():
        print(f"skipped: {SHARED / 'movielens-100k'} is not here (research-only data, never in the repo)")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="featctl-quality-"))
    interactions, store, images = prepare(work, args.clip)
    fusions = [f for f in args.fusions.split(",") if f]
    families = set(args.only.split(","))
    rows: list[dict[str, Any]] = []
    for kind in args.splits.split(","):
        for family, label, config, fused in plan(kind, interactions, store, images, args):
            if family not in families:
                continue
            started = time.perf_counter()
            print(f"{kind}: {label}", file=sys.stderr)
            out = best_fusion(config, fusions, label) if fused else run(config)
            rows.append({"split": kind, "model": label, **out, "seconds": round(time.perf_counter() - started, 1)})
    report(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"\nresults: {args.out}")
    return 0


def plan(kind: str, interactions: str, store: str, images: bool, args: Any) -> list[tuple[str, str, Any, bool]]:
    """(family, label, config, choose the fusion on validation) for every row of one split."""
    from featctl.models.data import InteractionsConfig
    from featctl.models.fit import Schedule
    from featctl.models.modalities import TagsConfig
    from featctl.models.train import TrainConfig
    from featctl.pipeline.sources import SourceSpec

    log = InteractionsConfig(SourceSpec(interactions), rating_col="rating", min_rating=4,
                             time_col="timestamp" if kind == "temporal" else None)
    base = TrainConfig("pop", log, store=store, split=kind, seed=0, schedule=Schedule(args.epochs, args.patience, 1, 0))
    shorter = Schedule(args.mm_epochs, args.mm_patience, 1, 0)
    rows: list[tuple[str, str, Any, bool]] = []
    if kind == "temporal":
        moe = dataclasses.replace(base, model="moe", item_features="item_text", schedule=shorter,
                                  image_features="item_image" if images else None)
        return [("baselines", "pop", base, False),
                ("moe", "sasrec (moe, id only)", dataclasses.replace(moe, modalities=("id",)), False),
                ("moe", "moe (id, text" + (", image)" if images else ")"), moe, False),
                ("moe-sub-experts", "moe, 4 sub-experts",
                 dataclasses.replace(moe, moe=dataclasses.replace(moe.moe, sub_experts=4)), False)]
    rows.append(("baselines", "pop", base, False))
    if kind == "random":
        rows += [("baselines", "itemknn", dataclasses.replace(base, model="itemknn"), False),
                 ("baselines", "ease", dataclasses.replace(base, model="ease"), False)]
    else:
        rows.append(("baselines", "content (item text)",
                     dataclasses.replace(base, model="content", item_features="item_text"), False))
    lightgcn = dataclasses.replace(base, model="lightgcn")
    rows += [("lightgcn", "lightgcn", lightgcn, False),
             ("lightgcn", "lightgcn + item text", dataclasses.replace(lightgcn, item_features="item_text"), True)]
    if kind == "random":
        rows.append(("lightgcn", "lightgcn + item and user text", dataclasses.replace(
            lightgcn, item_features="item_text", user_features="user_text"), True))
    items = str(Path(interactions).parent / "items.tsv")
    full = dataclasses.replace(base, model="mmgnn", item_features="item_text", schedule=shorter,
                               image_features="item_image" if images else None,
                               tags=TagsConfig(SourceSpec(items), "genres", "item_id"))
    p = full.mmgnn
    rows.append(("mmgnn", "mmgnn (full)", full, False))
    if kind != "cold-item":  # the ablations run where the modalities matter most: items never seen in training
        return rows
    rows += [("mmgnn", "mmgnn, no attention", dataclasses.replace(full, mmgnn=dataclasses.replace(p, attention=False)),
              False),
             ("mmgnn", "mmgnn, no item graph",
              dataclasses.replace(full, mmgnn=dataclasses.replace(p, item_graph=False)), False),
             ("mmgnn", "mmgnn, no tags", dataclasses.replace(full, tags=None), False),
             ("mmgnn", "mmgnn, ids only", dataclasses.replace(full, modalities=("id",)), False),
             ("mmgnn", "mmgnn, ids + text", dataclasses.replace(full, modalities=("id", "text")), False)]
    if images:
        rows.append(("mmgnn", "mmgnn, ids + image", dataclasses.replace(full, modalities=("id", "image")), False))
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    def cell(row: dict[str, Any], group: str, name: str) -> str:
        values = row["metrics"].get(group)
        return f"{values[name]:.4f}" if values else "–"

    print("\n| split | model | fusion | epochs (best) | Recall@20 | NDCG@20 | Hit@10 | cold Recall@20 | cold NDCG@20 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        t = row["training"]
        epochs = f"{t['epochs']} ({t['best_epoch']})" if "epochs" in t else "–"
        cells = [cell(row, group, name) for group, name in (("all", "recall@20"), ("all", "ndcg@20"),
                                                             ("all", "hit@10"), ("cold", "recall@20"),
                                                             ("cold", "ndcg@20"))]
        print(f"| {row['split']} | {row['model']} | {row.get('fusion', '–')} | {epochs} | " + " | ".join(cells) + " |")
    by = {(r["split"], r["model"]): r for r in rows}

    def value(split: str, model: str, group: str, name: str) -> float | None:
        row = by.get((split, model))
        return None if row is None or not row["metrics"].get(group) else row["metrics"][group][name]

    def compare(what: str, a: tuple[str, str, str, str], b: tuple[str, str, str, str], goal: float = 1.0) -> None:
        x, y = value(*a), value(*b)
        if x is not None and y is not None:
            ratio = x / y if y else float("inf")
            verdict = "met" if ratio >= goal else "NOT met"
            print(f"{what}: {x:.4f} / {y:.4f} = {ratio:.2f}x (goal: >= {goal:g}) -> {verdict}")

    compare("fused LightGCN / ID-only LightGCN, Recall@20", ("random", "lightgcn + item text", "all", "recall@20"),
            ("random", "lightgcn", "all", "recall@20"))
    for label in ("content (item text)", "lightgcn + item text"):
        compare(f"cold items, {label} / pop, Recall@20", ("cold-item", label, "cold", "recall@20"),
                ("cold-item", "pop", "cold", "recall@20"), 3)
    compare("cold items, mmgnn (full) / lightgcn + item text, Recall@20", ("cold-item", "mmgnn (full)", "cold",
            "recall@20"), ("cold-item", "lightgcn + item text", "cold", "recall@20"))
    moe = next((m for s, m in by if s == "temporal" and m.startswith("moe (")), None)
    if moe:
        compare(f"{moe} / sasrec (id only), Hit@10", ("temporal", moe, "all", "hit@10"),
                ("temporal", "sasrec (moe, id only)", "all", "hit@10"))
    for (split, model), row in by.items():
        if weights := row["training"].get("gate_weights"):
            print(f"{split} {model} gate weights: {weights}")


if __name__ == "__main__":
    sys.exit(main())
