"""The discord.py bot: syncs slash commands, keeps its index snapshot fresh, runs the engine off the loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.commands import APOLOGY, NO_MENTIONS, Questions
from bot.sharing import Sharing
from embeddings.engine import Engine
from embeddings.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_ERROR = 2


class NewsBot(commands.Bot):
    def __init__(self, engine: Engine, **options: Any) -> None:
        intents = discord.Intents.default()
        # Reading a question from an @mention needs the privileged message content intent.
        intents.message_content = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            **options,
        )
        self.engine = engine
        # Embedding and search are blocking: they run here so gateway heartbeats never wait on them.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="newsbot")
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        self.refresh_index.change_interval(seconds=engine.settings.refresh_seconds)
        self.watch_task: asyncio.Task[None] | None = None

    async def on_message(self, message: discord.Message, /) -> None:
        # Questions are handled by the Questions cog; there are no prefix commands to look for.
        return

    async def run_blocking(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(func, *args, **kwargs)
        )

    async def setup_hook(self) -> None:
        await self.run_blocking(self.engine.ensure_default_corpus)
        await self.run_blocking(lambda: self.engine.searcher)
        await self.add_cog(Questions(self))
        await self.add_cog(Sharing(self))
        guild_id = self.engine.settings.guild_id
        if guild_id:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info(
            "synced %d slash commands %s", len(synced), f"to guild {guild_id}" if guild_id else "globally"
        )
        self.refresh_index.start()
        if self.engine.settings.watch:
            from bot.watch import Watcher

            self.watcher = Watcher(self.engine, self.engine.settings.article_dirs, self.engine.settings.feeds)
            # Kept, so the task is not collected mid-run, and cancelled (which stops the watcher) on close.
            self.watch_task = asyncio.create_task(self.watcher.run_async(), name="newsbot-watch")

    @tasks.loop(seconds=2.0)
    async def refresh_index(self) -> None:
        try:
            if await self.run_blocking(self.engine.refresh):
                log.info("answering from index generation %d", self.engine.searcher.generation)
        except Exception:
            log.exception("refreshing the index failed; still answering from the previous one")

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        log.error("/%s failed", interaction.command.name if interaction.command else "?", exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(APOLOGY, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(APOLOGY, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.exception("could not send the apology either")

    async def close(self) -> None:
        self.refresh_index.cancel()
        if self.watch_task is not None:
            self.watch_task.cancel()
        await super().close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def run_bot(settings: Settings) -> int:
    """`newsbot serve`: the token comes only from DISCORD_TOKEN and is never printed or logged."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        print(
            "error: DISCORD_TOKEN is not set: put the bot token there (see `newsbot serve --help`)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    discord.utils.setup_logging(level=logging.INFO)
    bot = NewsBot(Engine(settings))

    async def serve() -> None:
        async with bot:  # closes the HTTP session even when login fails
            await bot.start(token)

    try:
        asyncio.run(serve())
    except discord.LoginFailure:
        print(
            "error: Discord rejected the token in DISCORD_TOKEN (was it reset or mistyped?)", file=sys.stderr
        )
        return EXIT_ERROR
    except discord.PrivilegedIntentsRequired:
        print(
            "error: enable the Message Content intent for this bot in the Discord developer portal",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        pass
    return 0
