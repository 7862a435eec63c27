"""The discord.py bot: syncs slash commands, keeps its index snapshot fresh, runs the engine off the loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.commands import APOLOGY, NO_MENTIONS, Questions, why
from bot.sharing import Sharing
from embeddings.engine import Engine
from embeddings.settings import Settings
from embeddings.store import StoreError

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
        quiet_reconnects()
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
        await self.sync_commands()
        self.refresh_index.start()
        if self.engine.settings.watch:
            from bot.watch import Watcher

            self.watcher = Watcher(self.engine, self.engine.settings.article_dirs, self.engine.settings.feeds)
            # Kept, so the task is not collected mid-run, and cancelled (which stops the watcher) on close.
            self.watch_task = asyncio.create_task(self.watcher.run_async(), name="newsbot-watch")

    async def sync_commands(self) -> None:
        """Register the slash commands; when Discord refuses, say how to fix it and serve without them
        (@mentions and answer channels need no registration)."""
        guild_id = self.engine.settings.guild_id
        scope = f"to guild {guild_id}" if guild_id else "globally"
        try:
            if guild_id:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
            else:
                synced = await self.tree.sync()
        except discord.Forbidden as error:
            log.warning(
                "Discord refused to register the slash commands %s (%s): re-invite the bot with the "
                "applications.commands scope (see `newsbot serve --help`); until then only @mentions "
                "and answer channels work",
                scope,
                why(error),
            )
            return
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            reason = why(error) if isinstance(error, discord.HTTPException) else repr(error)
            log.warning(
                "could not register the slash commands %s (%s); /ask, /stats and /reindex are "
                "unavailable until the next start, @mentions and answer channels still work",
                scope,
                reason,
            )
            return
        log.info("synced %d slash commands %s", len(synced), scope)

    @tasks.loop(seconds=2.0)
    async def refresh_index(self) -> None:
        try:
            if await self.run_blocking(self.engine.refresh):
                log.info("answering from index generation %d", self.engine.searcher.generation)
        except (StoreError, sqlite3.Error, OSError) as error:
            # A store gone bad under the bot (damaged, truncated, unreadable): say what, once a refresh.
            log.warning("refreshing the index failed (%s); still answering from the previous one", error)
        except Exception:
            log.exception("refreshing the index failed; still answering from the previous one")

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        name = interaction.command.name if interaction.command else "?"
        original = getattr(error, "original", error)
        if isinstance(original, discord.HTTPException):
            # Discord refused a response: nothing is broken here, and the apology would be refused too.
            log.warning("/%s: Discord refused the response (%s)", name, why(original))
            return
        log.error("/%s failed", name, exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(APOLOGY, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(APOLOGY, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as failed:
            log.warning("could not send the apology either (%s)", why(failed))

    async def close(self) -> None:
        self.refresh_index.cancel()
        if self.watch_task is not None:
            self.watch_task.cancel()
        await super().close()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Unreachable(Exception):
    """Discord could not be reached for as long as the settings allow."""


# What a network outage or a Discord outage looks like from discord.py.
NETWORK_ERRORS = (
    OSError,
    aiohttp.ClientError,
    TimeoutError,
    discord.DiscordServerError,
    discord.GatewayNotFound,
)


def describe(error: BaseException) -> str:
    """A network or server error on one line, without the library's traceback."""
    if isinstance(error, discord.HTTPException):
        return why(error)
    if isinstance(error, discord.ConnectionClosed):
        return f"connection closed with code {error.code}"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def login_patiently(bot: discord.Client, token: str, patience: float) -> None:
    """Log in, retrying with back-off while Discord is unreachable or failing (5xx), for up to
    ``patience`` seconds; a refusal (4xx) is not retried."""
    deadline = time.monotonic() + patience
    delay = 1.0
    while True:
        try:
            await bot.login(token)
            return
        except NETWORK_ERRORS as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unreachable(f"{describe(error)}; tried for {patience:g} s") from None
            wait = min(delay, left)
            log.warning("cannot reach Discord (%s); retrying in %.1f s", describe(error), wait)
            # Each attempt opens a new HTTP session: close this one (and its connector) first.
            await bot.http.close()
            bot.http.connector = discord.utils.MISSING
            await asyncio.sleep(wait)
            delay = min(delay * 2, 60.0)


class QuietReconnects(logging.Filter):
    """discord.py logs each failed gateway reconnect with a full traceback: one line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if isinstance(error, (*NETWORK_ERRORS, discord.ConnectionClosed)):
                record.msg = f"Discord connection lost ({describe(error)}); {record.getMessage()}"
                record.args = ()
                record.exc_info = None
                record.exc_text = None
        return True


def quiet_reconnects() -> None:
    for name in ("discord.client", "discord.gateway", "discord.shard"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietReconnects) for f in logger.filters):
            logger.addFilter(QuietReconnects())


def setup_logging() -> None:
    """One handler (the command line may have added one already: lines would print twice)."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    discord.utils.setup_logging(level=logging.INFO)


def run_bot(settings: Settings) -> int:
    """`newsbot serve`: the token comes only from DISCORD_TOKEN and is never printed or logged."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        print(
            "error: DISCORD_TOKEN is not set: put the bot token there (see `newsbot serve --help`)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    setup_logging()
    bot = NewsBot(Engine(settings))

    async def serve() -> None:
        async with bot:  # closes the HTTP session even when login fails
            await login_patiently(bot, token, settings.connect_retry_seconds)
            await bot.connect()

    try:
        asyncio.run(serve())
    except Unreachable as error:
        print(
            f"error: Discord cannot be reached ({error}); check the network, then start again",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except discord.HTTPException as error:
        # 401 is LoginFailure (below); any other refusal of the login is as final.
        print(f"error: Discord refused the login ({why(error)})", file=sys.stderr)
        return EXIT_ERROR
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
