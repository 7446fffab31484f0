"""Recommendation quality on MovieLens 100K: baselines, LightGCN, LightGCN fused with text, cold items.

Protocol (REFERENCE.md's RecBole protocol): rating >= 4 is a positive, seed 0, full ranking over all
items minus the user's training (and validation) items.

- random split (80/10/10 per user): pop, itemknn, ease, lightgcn (IDs), lightgcn + item text,
  lightgcn + item and user text;
- cold-item split (20% of the items held out entirely): pop, content (text similarity to the
  user's history), lightgcn (IDs), lightgcn + item text.

Item text is MiniLM (the shipped st:all-MiniLM-L6-v2) over "{title}. Genres: {genres}. {overview}",
user text over "Age {age}, {gender}, {occupation}", both embedded by featctl into the store the
trainers read. For each fused row the fusion (sum, concat, gate) with the best validation NDCG@20
(among cold items on the cold-item split) is kept, so the test set never chooses. Everything runs
through ``featctl.train``, as a user would.

Needs ../shared/data/movielens-100k (and movielens-100k-tmdb for overviews); without it the
benchmark says so and exits 0. Results go to bench/results/train_quality.json (git-ignored).

    python bench/train_quality.py [--epochs 300] [--patience 50] [--fusions sum,concat,gate]
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


def prepare(work: Path) -> tuple[str, str]:
    """MovieLens through featctl's adapter, item and user text embedded into a store; returns (log, store)."""
    import featctl
    from featctl.pipeline.datasets import prepare_dataset

    data = work / "ml-100k"
    prepared = prepare_dataset("movielens-100k", str(data), source=str(SHARED / "movielens-100k"))
    template = ITEM_TEXT if prepared.side_data else "{title}. Genres: {genres}."
    store = str(work / "store")
    started = time.perf_counter()
    featctl.embed(featctl.EmbedConfig(source=featctl.SourceSpec(str(data / "items.tsv")), store=store,
                                      name="item_text", id_column="item_id", text=template))
    featctl.embed(featctl.EmbedConfig(source=featctl.SourceSpec(str(data / "users.tsv")), store=store,
                                      name="user_text", entity="user", id_column="user_id", text=USER_TEXT))
    print(f"embedded items ({template!r}) and users in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return str(data / "interactions.tsv"), store


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
    parser.add_argument("--splits", default="random,cold-item")
    parser.add_argument("--work", type=Path, default=None, help="keep the prepared data and store here")
    args = parser.parse_args(argv)
    if not (SHARED / "movielens-100k" / "u.data").is_file():
        print(f"skipped: {SHARED / 'movielens-100k'} is not here (research-only data, never in the repo)")
        return 0
    from featctl.models.data import InteractionsConfig
    from featctl.models.fit import Schedule
    from featctl.models.train import TrainConfig
    from featctl.pipeline.sources import SourceSpec

    work = args.work or Path(tempfile.mkdtemp(prefix="featctl-quality-"))
    interactions, store = prepare(work)
    fusions = [f for f in args.fusions.split(",") if f]
    rows: list[dict[str, Any]] = []
    for kind in args.splits.split(","):
        base = TrainConfig("pop", InteractionsConfig(SourceSpec(interactions), rating_col="rating", min_rating=4),
                           store=store, split=kind, seed=0, schedule=Schedule(args.epochs, args.patience, 1, 0))
        plan: list[tuple[str, Any, bool]] = [("pop", base, False)]
        if kind == "random":
            plan += [("itemknn", dataclasses.replace(base, model="itemknn"), False),
                     ("ease", dataclasses.replace(base, model="ease"), False)]
        else:
            plan += [("content (item text)", dataclasses.replace(base, model="content", item_features="item_text"),
                      False)]
        lightgcn = dataclasses.replace(base, model="lightgcn")
        plan += [("lightgcn", lightgcn, False),
                 ("lightgcn + item text", dataclasses.replace(lightgcn, item_features="item_text"), True)]
        if kind == "random":
            plan.append(("lightgcn + item and user text", dataclasses.replace(
                lightgcn, item_features="item_text", user_features="user_text"), True))
        for label, config, fused in plan:
            started = time.perf_counter()
            print(f"{kind}: {label}", file=sys.stderr)
            out = best_fusion(config, fusions, label) if fused else run(config)
            rows.append({"split": kind, "model": label, **out, "seconds": round(time.perf_counter() - started, 1)})
    report(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"\nresults: {RESULTS}")
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    def cell(row: dict[str, Any], group: str, name: str) -> str:
        values = row["metrics"].get(group)
        return f"{values[name]:.4f}" if values else "–"

    print("\n| split | model | fusion | epochs (best) | Recall@20 | NDCG@20 | warm Recall@20 | cold Recall@20 "
          "| cold NDCG@20 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        t = row["training"]
        epochs = f"{t['epochs']} ({t['best_epoch']})" if "epochs" in t else "–"
        cells = [cell(row, group, name) for group, name in (("all", "recall@20"), ("all", "ndcg@20"),
                                                             ("warm", "recall@20"), ("cold", "recall@20"),
                                                             ("cold", "ndcg@20"))]
        print(f"| {row['split']} | {row['model']} | {row.get('fusion', '–')} | {epochs} | " + " | ".join(cells) + " |")
    by = {(r["split"], r["model"]): r["metrics"] for r in rows}
    if ("random", "lightgcn") in by:
        ids = by[("random", "lightgcn")]["all"]["recall@20"]
        fused = by[("random", "lightgcn + item text")]["all"]["recall@20"]
        print(f"\nfused LightGCN / ID-only LightGCN, Recall@20: {fused:.4f} / {ids:.4f} = {fused / ids:.2f}x "
              f"(goal: above 1) -> {'met' if fused > ids else 'NOT met'}")
    if ("cold-item", "pop") not in by:
        return
    pop = by[("cold-item", "pop")]["cold"]["recall@20"]
    for label in ("content (item text)", "lightgcn + item text"):
        text = by[("cold-item", label)]["cold"]["recall@20"]
        ratio = text / pop if pop else float("inf")
        print(f"cold items, {label} / pop, Recall@20: {text:.4f} / {pop:.4f} = {ratio:.1f}x (goal: >= 3) -> "
              f"{'met' if ratio >= 3 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
