"""Benchmark ``featctl embed --encoder openai:...`` under a tokens/min limit, against simple clients.

An OpenAI-compatible server (tests/openai_server.py, in its own process so that it does not share
the clients' interpreter lock) runs on 127.0.0.1 with 50 ms of latency per request and enforces a
tokens/min limit server-side: a bucket of 5 s of the limit, refilled continuously, 429 with
retry-after when empty. In one run, three clients embed texts through the real openai SDK:

1. featctl: ``featctl.embed`` into a fresh store, told the account's --tpm (target: achieved
   tokens/min >= 90% of the limit, with the vectors committed);
2. one text per request, one request at a time (the loop most save_embeddings.py scripts run);
3. one full batch (2048 texts) per request, one request at a time, with the SDK's own retries.

Achieved tokens/min is the tokens the server billed divided by each client's wall time. Results go
to bench/results/openai.json (git-ignored).

Usage::

    .venv/bin/python bench/openai.py            # about 2 minutes
    .venv/bin/python bench/openai.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# This file is bench/openai.py: its folder must not shadow the openai package.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

import openai  # noqa: E402

from featctl.pipeline.config import EmbedConfig  # noqa: E402
from featctl.pipeline.runner import embed  # noqa: E402
from featctl.pipeline.sources import SourceSpec  # noqa: E402

KEY = "sk-bench"
WINDOW = 5.0  # the server's bucket holds this many seconds of the limit: what a fresh client may burst
MODEL = "text-embedding-3-small"
WORDS = ("space western heist cooking drama robot pilot village festival detective lantern ghost "
         "summer school rival band tournament sword dragon ramen ocean island archive").split()


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"title {seed}-{i}: " + " ".join(rng.choices(WORDS, k=rng.randint(6, 14))) for i in range(n)]


class Server:
    """tests/openai_server.py in a subprocess, and its counters over HTTP."""

    def __init__(self, tpm: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_server", "--api-key", KEY, "--latency", "0.05",
             "--tpm", str(tpm), "--window", str(WINDOW)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()

    def stats(self, reset: bool = False) -> dict[str, Any]:
        request = urllib.request.Request(self.base_url.removesuffix("/v1") + "/_stats",
                                         method="POST" if reset else "GET")
        with urllib.request.urlopen(request) as reply:
            return json.load(reply)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def counted(server: Server, seconds: float, **extra: Any) -> dict[str, Any]:
    stats = server.stats()
    return {"seconds": seconds, "tokens": stats["billed_tokens"], "requests": stats["requests"],
            "rate_limited": stats["statuses"].get("429", 0), **extra}


def run_featctl(server: Server, rows: list[str], tpm: float, work: Path) -> dict[str, Any]:
    source = work / "items.tsv"
    source.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(rows)), encoding="utf-8")
    server.stats(reset=True)
    started = time.perf_counter()
    result = embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(work / "store"), text="{text}",
                               encoder=f"openai:{MODEL}", encoder_options={"dimensions": 256, "tpm": tpm}))
    seconds = time.perf_counter() - started
    assert result.failed == 0 and result.encoded == len(rows), result
    return counted(server, seconds)


def run_simple(server: Server, rows: list[str], batch: int, seconds: float) -> dict[str, Any]:
    """Sequential requests of ``batch`` texts for about ``seconds`` (the SDK retries 429s itself)."""
    client = openai.OpenAI(api_key=KEY, base_url=server.base_url)
    server.stats(reset=True)
    started = time.perf_counter()
    failed = 0
    for lo in range(0, len(rows), batch):
        if time.perf_counter() - started > seconds:
            break
        try:
            client.embeddings.create(model=MODEL, input=rows[lo:lo + batch], dimensions=256)
        except openai.RateLimitError:
            failed += 1  # out of retries: a script would crash or drop these rows here
    return counted(server, time.perf_counter() - started, failed_requests=failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tpm", type=float, default=1_200_000, help="the account's tokens/min limit")
    parser.add_argument("--rows", type=int, default=40_000, help="texts featctl embeds")
    parser.add_argument("--baseline-seconds", type=float, default=30.0, help="how long each simple client runs")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.baseline_seconds = 8000, 6.0
    logging.basicConfig(level=logging.WARNING)

    report: dict[str, object] = {"tpm_limit": args.tpm, "latency_s": 0.05}
    server = Server(args.tpm)
    try:
        os.environ.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=server.base_url)
        with tempfile.TemporaryDirectory() as tmp:
            runs = {
                "featctl": run_featctl(server, texts(args.rows, 1), args.tpm, Path(tmp)),
                "one text per request": run_simple(server, texts(20_000, 2), 1, args.baseline_seconds),
                "one batch at a time": run_simple(server, texts(400_000, 3), 2048, args.baseline_seconds),
            }
    finally:
        server.close()
    print(f"tokens/min limit {args.tpm:,.0f} (server-side, a bucket of {WINDOW:g} s of it), "
          "50 ms latency per request\n")
    print(f"{'client':24} {'tokens':>10} {'seconds':>8} {'tokens/min':>12} {'of limit':>9} {'429s':>5}")
    featctl_tpm = runs["featctl"]["tokens"] / runs["featctl"]["seconds"] * 60
    for name, run in runs.items():
        run["tokens_per_min"] = run["tokens"] / run["seconds"] * 60
        run["of_limit"] = run["tokens_per_min"] / args.tpm
        print(f"{name:24} {run['tokens']:>10,} {run['seconds']:>8.1f} {run['tokens_per_min']:>12,.0f} "
              f"{run['of_limit']:>9.1%} {run['rate_limited']:>5}")
    for name in ("one text per request", "one batch at a time"):
        print(f"featctl / {name}: {featctl_tpm / runs[name]['tokens_per_min']:.1f}x")
    report["runs"] = runs
    out = REPO / "bench" / "results" / "openai.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    verdict = "met" if runs["featctl"]["of_limit"] >= 0.9 else "NOT met"
    print(f"\nfeatctl at {runs['featctl']['of_limit']:.1%} of the limit: goal >= 90% {verdict}")


if __name__ == "__main__":
    main()
