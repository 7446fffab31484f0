"""Peak memory of ``mmgnn`` with 100k items: item graphs generated in batches vs for every item at once.

Each measurement runs in its own process (so its peak RSS is its own) on a synthetic catalogue:
``--items`` items with a 384-d text vector, a 512-d image vector (5% missing) and 1-3 of 20 tags,
``--users`` users and ``--interactions`` interactions drawn with a popularity skew. The process
builds the model exactly as ``featctl train mmgnn`` does, runs ``--steps`` training steps (BPR
batches of 2048, each generating the graphs of its distinct items), then scores every item
(``embeddings()``, which generates every item's graph ``item_batch`` at a time).

Rows: item_batch 4096 (the default) and item_batch = all items (what a model that builds every
item's graph at once would hold), for 10k and for ``--items`` items. Printed: peak RSS, the part of
it above the process's RSS once the inputs are loaded, and seconds. Results go to
bench/results/mmgnn_memory.json (git-ignored).

    .venv/bin/python bench/mmgnn_memory.py [--items 100000] [--users 20000] [--interactions 500000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "mmgnn_memory.json"


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def measure(items: int, users: int, interactions: int, item_batch: int, steps: int) -> dict[str, float]:
    """One measurement, in this process."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from featctl.models.features import Features
    from featctl.models.mmgnn import MMGNN, MMGNNParams
    from featctl.models.modalities import ItemInputs, Tags

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    pairs = np.unique(np.stack([rng.integers(0, users, interactions),
                                rng.choice(items, interactions, p=popularity / popularity.sum())], 1), axis=0)
    text = Features("text", "item", rng.standard_normal((items, 384), dtype=np.float32), np.ones(items, bool))
    image = Features("image", "item", rng.standard_normal((items, 512), dtype=np.float32), rng.random(items) > 0.05)
    counts = rng.integers(1, 4, items)
    indptr = np.zeros(items + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    tags = Tags([f"tag{i}" for i in range(20)], rng.integers(0, 20, int(indptr[-1])), indptr)
    inputs = ItemInputs({"text": text, "image": image}, tags)
    model = MMGNN(pairs, users, items, MMGNNParams(item_batch=item_batch), ("id", "text", "image"), inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loaded = _rss_mib()
    started = time.perf_counter()
    for step, (_, loss) in enumerate(model.steps(rng)):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 == steps:
            break
    model.eval()
    users_out, items_out = model.embeddings()
    assert items_out.shape == (items, 64) and torch.isfinite(items_out).all()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"items": items, "item_batch": item_batch, "interactions": len(pairs), "peak_rss_mib": round(peak, 1),
            "inputs_rss_mib": round(loaded, 1), "above_inputs_mib": round(peak - loaded, 1),
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "items,item_batch": measure in-process
    args = parser.parse_args(argv)
    if args.one:
        items, batch = map(int, args.one.split(","))
        scale = items / args.items
        print(json.dumps(measure(items, max(100, int(args.users * scale)), max(1000, int(args.interactions * scale)),
                                 batch, args.steps)))
        return 0
    rows = []
    for items in sorted({10_000, args.items}):
        for batch in (4096, items):
            command = [sys.executable, __file__, "--one", f"{items},{batch}", "--items", str(args.items),
                       "--users", str(args.users), "--interactions", str(args.interactions), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                rows.append({"items": items, "item_batch": batch, "error": done.stderr.strip().splitlines()[-1]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {rows[-1]}", file=sys.stderr)
    print("\n| items | interactions | item graphs per batch | peak RSS (MiB) | above inputs (MiB) | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['items']:,} | | {row['item_batch']:,} | failed: {row['error']} | | |")
            continue
        print(f"| {row['items']:,} | {row['interactions']:,} | {row['item_batch']:,} | {row['peak_rss_mib']:,.0f} | "
              f"{row['above_inputs_mib']:,.0f} | {row['seconds']} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2))
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
