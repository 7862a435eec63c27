"""Time from a question's arrival to the bot's reply, through discord.py on a loopback Discord.

    .venv/bin/python benchmarks/discord_latency.py [--questions 200]

Runs the real bot against tests/discord_server.py on 127.0.0.1 with the sample article (or --store),
asks by @mention and by /ask one after another, and prints p50/p99 per route.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.client import NewsBot
from embeddings.engine import Engine
from embeddings.settings import load_settings
from tests.discord_server import FakeDiscord

QUESTIONS = [
    "Who opposed the ABM amendment?",
    "Where will Putin go after Beijing?",
    "What will the joint statement warn of?",
    "When was the ABM treaty signed?",
    "Who is the Chinese president?",
]


async def run(count: int, store: Path) -> dict[str, list[float]]:
    settings = load_settings(store=store).replace(cooldown_questions=count * 2, refresh_seconds=5.0)
    async with FakeDiscord() as server:
        bot = NewsBot(Engine(settings.replace(guild_id=server.guild_id)), guild_ready_timeout=0.05)
        times: dict[str, list[float]] = {"mention": [], "slash /ask": []}
        async with server.running(bot):
            assert bot.user is not None
            for i in range(count):
                question = QUESTIONS[i % len(QUESTIONS)]
                sent = time.monotonic()
                asked = await server.send_message(f"{bot.user.mention} {question}")
                reply = await server.wait_for_message(lambda r, m=asked: r.reply_to == m, timeout=60)
                times["mention"].append((reply.at - sent) * 1000)
                sent = time.monotonic()
                interaction = await server.send_slash_command("ask", {"question": question})
                reply = await server.wait_for_message(
                    lambda r, i=interaction: r.interaction_id == i.id, timeout=60
                )
                times["slash /ask"].append((reply.at - sent) * 1000)
        return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--store", help="an existing store (default: a fresh one with the sample article)")
    args = parser.parse_args()
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="newsbot-latency-")) / "store"
    times = asyncio.run(run(args.questions, store))
    print("| route | questions | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for route, values in times.items():
        print(
            f"| {route} | {len(values)} | {np.percentile(values, 50):.1f} | {np.percentile(values, 99):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
