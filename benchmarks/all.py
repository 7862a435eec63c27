"""Every speed figure the project promises, in one table, each next to its limit.

    .venv/bin/python benchmarks/all.py [--corpus DIR]

Runs `ingest_ask.py` (ingest against the raw encoder, re-ingest, adding 10 articles) and `scale.py`
(ask latency, recall, start-up and memory at 10k, 100k and 1M passages) one after the other, so
they do not share the cores, and prints their rows under one header.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(script: str, *args: str) -> list[str]:
    """The table rows a benchmark printed; its other lines (what it measured on) go to stderr."""
    out = subprocess.run(
        [sys.executable, str(HERE / script), *args], check=True, capture_output=True, text=True
    )
    lines = out.stdout.splitlines()
    for line in lines:
        if not line.startswith("|"):
            print(line, file=sys.stderr)
    return [line for line in lines if line.startswith("| ") and not line.startswith("| measure |")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", help="articles for ingest_ask.py (default: its own)")
    args = parser.parse_args()
    table = rows("ingest_ask.py", *(["--corpus", args.corpus] if args.corpus else []))
    table += rows("scale.py")
    print("| measure | value | target |")
    print("|---|---|---|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
