"""LightGCN epoch time: featctl's trainer against RecBole's LightGCN, on the same MovieLens 100K split, in one run.

Both train LightGCN with the same settings (dimension 64, 2 layers, Adam at 1e-3, batches of 2048
BPR triples with one uniform negative, full ranking, early stopping on validation NDCG@20) on the
very split featctl makes (rating >= 4, random 80/10/10 per user, seed 0), written out as files that
RecBole reads in its benchmark-file mode. Epoch time is training only (sampling, batching, forward,
backward, step), validation excluded, for both. Reported: the ratio of mean epoch times and both
test Recall@20 / NDCG@20 (goal: ratio <= 0.5 at equal or better Recall@20).

RecBole runs in its own virtualenv (it pins numpy<2, scipy<1.13): pass its python with
--recbole-python or $FEATCTL_RECBOLE_PYTHON (README, "Benchmarks", has the two install commands).
When there is none, or it fails, the baseline is a straightforward dense-adjacency LightGCN written
here, and the output says why. Results go to bench/results/train_speed.json (git-ignored).

    python bench/train_speed.py [--epochs 300] [--patience 50] [--recbole-python PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "train_speed.json"
DEFAULT_RECBOLE = Path("/work/recbole-venv/bin/python")


def featctl_lightgcn(parts: Any, epochs: int, patience: int) -> dict[str, Any]:
    from featctl.models.evaluate import evaluate
    from featctl.models.fit import Schedule, fit, scorer
    from featctl.models.lightgcn import LightGCN, LightGCNParams

    params = LightGCNParams()
    torch.manual_seed(0)
    model = LightGCN(parts.train, parts.n_users, parts.n_items, params)
    history = fit(model, parts, Schedule(epochs, patience, 1, 0), params.lr)
    test = evaluate(scorer(model), parts, "test", ks=(10, 20))["all"]
    return {"epoch_seconds": history.epoch_seconds, "epochs": history.epochs_run, "best_epoch": history.best_epoch,
            "recall@20": test["recall@20"], "ndcg@20": test["ndcg@20"]}


def recbole_lightgcn(python: str, files: dict[str, Path], epochs: int, patience: int, threads: int,
                     work: Path) -> dict[str, Any]:
    out = work / "recbole.json"
    command = [python, str(ROOT / "bench" / "recbole_lightgcn.py"), "--train", str(files["train"]),
               "--valid", str(files["valid"]), "--test", str(files["test"]), "--epochs", str(epochs),
               "--stopping-step", str(patience), "--threads", str(threads), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
    result = json.loads(out.read_text())
    return {"epoch_seconds": result["epoch_times_s"], "epochs": result["epochs_run"],
            "best_epoch": result["best_epoch"], "recall@20": result["test"]["recall@20"],
            "ndcg@20": result["test"]["ndcg@20"], "versions": result.get("versions")}


def dense_lightgcn(parts: Any, epochs: int, patience: int) -> dict[str, Any]:
    """The straightforward version: a dense normalised adjacency and torch.mm, same loss and schedule."""
    from featctl.models.evaluate import evaluate, metric

    n = parts.n_users + parts.n_items
    adjacency = torch.zeros(n, n)
    users, items = torch.from_numpy(parts.train[:, 0]), torch.from_numpy(parts.train[:, 1] + parts.n_users)
    adjacency[users, items] = adjacency[items, users] = 1.0
    scale = adjacency.sum(1).pow(-0.5).nan_to_num(posinf=0.0)
    adjacency = scale[:, None] * adjacency * scale[None, :]
    torch.manual_seed(0)
    weights = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(n, 64)))
    optimizer = torch.optim.Adam([weights], lr=1e-3)
    rng = np.random.default_rng(0)
    known = set(map(tuple, parts.train.tolist()))

    def final() -> torch.Tensor:
        one = adjacency @ weights
        return (weights + one + adjacency @ one) / 3

    seconds, best, best_epoch, stale, epoch = [], -1.0, 0, 0, 0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        shuffled = parts.train[rng.permutation(len(parts.train))]
        for start in range(0, len(shuffled), 2048):
            rows = shuffled[start:start + 2048]
            neg = rng.integers(0, parts.n_items, len(rows))
            for k, (u, j) in enumerate(zip(rows[:, 0], neg)):
                while (u, j) in known:
                    j = neg[k] = rng.integers(0, parts.n_items)
            out = final()
            u, p, q = out[rows[:, 0]], out[rows[:, 1] + parts.n_users], out[neg + parts.n_users]
            ego = weights[np.concatenate([rows[:, 0], rows[:, 1] + parts.n_users, neg + parts.n_users])]
            loss = -torch.nn.functional.logsigmoid((u * (p - q)).sum(1)).mean() + 1e-4 * ego.square().sum() / (
                2 * len(rows))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
        with torch.no_grad():
            embeddings = final()
        score = metric(evaluate(lambda b, e=embeddings: e[b] @ e[parts.n_users:].T, parts, "valid", ks=(20,)),
                       "ndcg@20")
        if score > best:
            best, best_epoch, stale, kept = score, epoch, 0, embeddings
        else:
            stale += 1
        if stale >= patience:
            break
    test = evaluate(lambda b: kept[b] @ kept[parts.n_users:].T, parts, "test", ks=(20,))["all"]
    return {"epoch_seconds": seconds, "epochs": epoch, "best_epoch": best_epoch, "recall@20": test["recall@20"],
            "ndcg@20": test["ndcg@20"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--recbole-python", default=os.environ.get("FEATCTL_RECBOLE_PYTHON") or (
        str(DEFAULT_RECBOLE) if DEFAULT_RECBOLE.exists() else None))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, both sides")
    args = parser.parse_args(argv)
    if not (SHARED / "movielens-100k" / "u.data").is_file():
        print(f"skipped: {SHARED / 'movielens-100k'} is not here (research-only data, never in the repo)")
        return 0
    from featctl.models.data import InteractionsConfig, load_interactions
    from featctl.models.splits import split
    from featctl.pipeline.datasets import prepare_dataset
    from featctl.pipeline.sources import SourceSpec

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="featctl-speed-"))
    prepare_dataset("movielens-100k", str(work / "ml"), source=str(SHARED / "movielens-100k"))
    data = load_interactions(InteractionsConfig(SourceSpec(str(work / "ml" / "interactions.tsv")),
                                                rating_col="rating", min_rating=4))
    parts = split(data, "random", 0)
    files = {}
    for name in ("train", "valid", "test"):
        pairs = getattr(parts, name)
        files[name] = work / f"{name}.tsv"
        lines = (f"{data.users[u].as_py()}\t{data.items[i].as_py()}" for u, i in pairs.tolist())
        files[name].write_text("user_id\titem_id\n" + "\n".join(lines) + "\n")
    print(f"split: {parts.summary()}, {args.threads} torch thread(s)", file=sys.stderr)
    ours = featctl_lightgcn(parts, args.epochs, args.patience)
    baseline_name, why = "RecBole 1.2.1 LightGCN", None
    try:
        if not args.recbole_python:
            raise RuntimeError("no RecBole python given (--recbole-python or $FEATCTL_RECBOLE_PYTHON)")
        baseline = recbole_lightgcn(args.recbole_python, files, args.epochs, args.patience, args.threads, work)
    except (RuntimeError, OSError, KeyError, json.JSONDecodeError) as exc:
        why = f"RecBole could not run: {exc}"
        baseline_name = "dense-adjacency LightGCN (torch.mm)"
        print(f"{why}; comparing against a {baseline_name} instead", file=sys.stderr)
        baseline = dense_lightgcn(parts, args.epochs, args.patience)
    report = {"baseline": baseline_name, "why_not_recbole": why, "threads": args.threads, "featctl": ours,
              "reference": baseline}
    mean_ours, mean_base = statistics.mean(ours["epoch_seconds"]), statistics.mean(baseline["epoch_seconds"])
    report["epoch_time_ratio"] = mean_ours / mean_base
    print("\n| trainer | s/epoch (mean) | epochs (best) | Recall@20 | NDCG@20 |\n|---|---|---|---|---|")
    for label, r in (("featctl lightgcn", ours), (baseline_name, baseline)):
        print(f"| {label} | {statistics.mean(r['epoch_seconds']):.3f} | {r['epochs']} ({r['best_epoch']}) | "
              f"{r['recall@20']:.4f} | {r['ndcg@20']:.4f} |")
    met = report["epoch_time_ratio"] <= 0.5 and ours["recall@20"] >= baseline["recall@20"] - 0.005  # equal: ±0.005
    print(f"\nepoch time featctl / {baseline_name}: {report['epoch_time_ratio']:.2f}x (goal <= 0.5 at equal or "
          f"better Recall@20: {ours['recall@20']:.4f} vs {baseline['recall@20']:.4f}) -> {'met' if met else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
