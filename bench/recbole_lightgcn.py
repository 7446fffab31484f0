#!/usr/bin/env python3
"""Reference baseline: RecBole's LightGCN on a pre-split dataset.

Standalone (does not import featctl); run it with a separate RecBole venv:

    /work/recbole-venv/bin/python bench/recbole_lightgcn.py \
        --train train.tsv --valid valid.tsv --test test.tsv \
        --epochs 300 --layers 2 --lr 1e-3 --dim 64 --batch 2048 --seed 0 \
        --out result.json [--eval-every 1] [--stopping-step 50]

Input TSVs have the header ``user_id<TAB>item_id`` (original ids). They are
written as RecBole atomic benchmark files (``<name>.{train,valid,test}.inter``)
into a temporary data dir; RecBole's benchmark-file mode keeps the given split
(no filtering, ids remapped jointly across the three files). Full-ranking
evaluation: valid masks train items, test masks train+valid items.

Training time is measured per call of ``Trainer._train_epoch`` (includes
negative sampling and batching, excludes validation). Test metrics come from the
best-validation checkpoint (``valid_metric``, default NDCG@20).

Known environment needs (RecBole 1.2.1 with torch >= 2.6): the checkpoint reload
uses ``torch.load`` without ``weights_only=False``, so this script sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` before importing torch.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
warnings.filterwarnings("ignore", message=".*torch.sparse.SparseTensor.*")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reg-weight", type=float, default=1e-5)
    p.add_argument("--eval-every", type=int, default=1,
                   help="validate every N epochs (RecBole eval_step)")
    p.add_argument("--stopping-step", type=int, default=50,
                   help="early stop after this many validations without improvement")
    p.add_argument("--valid-metric", default="NDCG@20")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0 = torch default)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp data dir")
    p.add_argument("--verbose", action="store_true", help="RecBole INFO logging")
    return p.parse_args(argv)


def read_pairs(path):
    """Read a user_id<TAB>item_id TSV, keeping ids as exact string tokens."""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").rstrip("\r").split("\t")
        if header[:2] != ["user_id", "item_id"]:
            raise SystemExit(f"{path}: expected header 'user_id\\titem_id', got {header}")
        for ln, line in enumerate(f, 2):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise SystemExit(f"{path}:{ln}: expected 2 columns")
            rows.append((parts[0].strip(), parts[1].strip()))
    return rows


def write_atomic(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\n")
        for u, i in rows:
            f.write(f"{u}\t{i}\n")


def main(argv=None):
    args = parse_args(argv)
    out_path = os.path.abspath(args.out)
    parts = {"train": os.path.abspath(args.train),
             "valid": os.path.abspath(args.valid),
             "test": os.path.abspath(args.test)}

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    work = tempfile.mkdtemp(prefix="recbole_lightgcn_")
    name = "split"
    data_dir = os.path.join(work, name)
    os.makedirs(data_dir)
    counts = {}
    for part, src in parts.items():
        rows = read_pairs(src)
        counts[part] = len(rows)
        write_atomic(os.path.join(data_dir, f"{name}.{part}.inter"), rows)

    config_dict = {
        "data_path": work,
        "checkpoint_dir": os.path.join(work, "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG", "Hit"],
        "topk": [10, 20, 50],
        "valid_metric": args.valid_metric,
        "metric_decimal_place": 6,
        "embedding_size": args.dim,
        "n_layers": args.layers,
        "reg_weight": args.reg_weight,
        "learning_rate": args.lr,
        "train_batch_size": args.batch,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1,
                                  "alpha": 1.0, "dynamic": False, "candidate_num": 0},
        "seed": args.seed,
        "reproducibility": True,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "eval_step": args.eval_every,
        "use_gpu": False,
        "gpu_id": "",
        "show_progress": False,
        "state": "INFO" if args.verbose else "ERROR",
        "log_wandb": False,
    }

    old_cwd = os.getcwd()
    os.chdir(work)  # RecBole writes ./log and ./log_tensorboard relative to cwd
    try:
        # RecBole's Config also parses sys.argv ("--key=value"); keep our flags out of it
        saved_argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            config = Config(model="LightGCN", dataset=name, config_dict=config_dict)
        finally:
            sys.argv = saved_argv
        config["device"] = torch.device("cpu")
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)

        t0 = time.perf_counter()
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        t_data = time.perf_counter() - t0

        # sanity: the split must survive RecBole's loading unchanged
        got = {"train": len(train_data.dataset), "valid": len(valid_data.dataset),
               "test": len(test_data.dataset)}
        if got != counts:
            raise SystemExit(f"RecBole changed the split: input {counts}, RecBole {got}")

        init_seed(config["seed"], config["reproducibility"])
        model = LightGCN(config, train_data.dataset).to(config["device"])

        epoch_times = []
        saved_epochs = []

        class TimedTrainer(Trainer):
            def _train_epoch(self, *a, **kw):
                s = time.perf_counter()
                r = super()._train_epoch(*a, **kw)
                epoch_times.append(time.perf_counter() - s)
                return r

            def _save_checkpoint(self, epoch, *a, **kw):
                saved_epochs.append(epoch)  # called exactly when validation improves
                return super()._save_checkpoint(epoch, *a, **kw)

        trainer = TimedTrainer(config, model)
        t0 = time.perf_counter()
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=True, show_progress=False, verbose=args.verbose)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        t_test = time.perf_counter() - t0
    finally:
        os.chdir(old_cwd)
        if not args.keep_tmp:
            shutil.rmtree(work, ignore_errors=True)

    best_epoch = saved_epochs[-1] if saved_epochs else None
    n_ep = len(epoch_times)
    result = {
        "tool": "recbole",
        "model": "LightGCN",
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__,
                     "numpy": __import__("numpy").__version__,
                     "scipy": __import__("scipy").__version__,
                     "pandas": __import__("pandas").__version__,
                     "python": sys.version.split()[0]},
        "params": {"epochs": args.epochs, "layers": args.layers, "lr": args.lr,
                   "dim": args.dim, "batch": args.batch, "seed": args.seed,
                   "reg_weight": args.reg_weight, "eval_every": args.eval_every,
                   "stopping_step": args.stopping_step, "valid_metric": args.valid_metric,
                   "neg_samples": 1, "torch_threads": torch.get_num_threads()},
        "data": {"n_train": counts["train"], "n_valid": counts["valid"],
                 "n_test": counts["test"],
                 # RecBole counts include its padding id 0
                 "n_users": dataset.user_num - 1, "n_items": dataset.item_num - 1},
        "epochs_run": n_ep,
        "best_epoch": None if best_epoch is None else best_epoch + 1,  # 1-based
        "train_s_per_epoch_mean": statistics.fmean(epoch_times) if n_ep else None,
        "train_s_per_epoch_median": statistics.median(epoch_times) if n_ep else None,
        "train_s_total": sum(epoch_times),
        "fit_wall_s": t_fit,          # training + validation
        "data_prep_s": t_data,
        "test_eval_s": t_test,
        "epoch_times_s": [round(t, 5) for t in epoch_times],
        "best_valid_score": float(best_valid_score),
        "valid": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test": {k: float(v) for k, v in (test_result or {}).items()},
    }
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    printable = dict(result)
    printable.pop("epoch_times_s")
    print(json.dumps(printable, indent=2))
    return result


if __name__ == "__main__":
    main()
