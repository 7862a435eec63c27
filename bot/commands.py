"""What people do with the bot: /ask, mentions, "Show passages", /stats and /reindex."""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import answer_embed, passages_text, question_line
from embeddings.answer import QuestionError, check_question
from embeddings.records import Answer

if TYPE_CHECKING:
    from bot.client import NewsBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
APOLOGY = "Sorry, something went wrong while answering that. The error is logged; please try again."
_MENTION = re.compile(r"<@!?\d+>")


class PassagesView(discord.ui.View):
    """A "Show passages" button under an answer; the passages go to whoever clicks, and only to them."""

    def __init__(self, key: str) -> None:
        super().__init__(timeout=None)
        self.add_item(
            discord.ui.Button(
                label="Show passages",
                style=discord.ButtonStyle.secondary,
                custom_id=f"newsbot:passages:{key}",
            )
        )


class Questions(commands.Cog):
    def __init__(self, bot: NewsBot) -> None:
        self.bot = bot
        settings = bot.engine.settings
        self.cooldown: commands.CooldownMapping[int] = commands.CooldownMapping(
            commands.Cooldown(settings.cooldown_questions, settings.cooldown_seconds), lambda user_id: user_id
        )
        # Recent answers by key, for the "Show passages" button.
        self.recent: OrderedDict[str, Answer] = OrderedDict()

    # -- answering ------------------------------------------------------------------------
    def _remember(self, answer: Answer) -> str:
        key = f"{time.time_ns():x}"
        self.recent[key] = answer
        while len(self.recent) > 500:
            self.recent.popitem(last=False)
        return key

    async def answer_message(self, question: str) -> dict:
        """The keyword arguments of a reply: an embed, the button, and no pings, whatever happens."""
        try:
            question = check_question(question, self.bot.engine.settings.max_question_chars)
        except QuestionError as err:
            return {"content": f"I can't answer that: {err}.", "allowed_mentions": NO_MENTIONS}
        try:
            answer = await self.bot.run_blocking(self.bot.engine.ask, question)
        except Exception:
            log.exception("answering %r failed", question[:200])
            return {"content": APOLOGY, "allowed_mentions": NO_MENTIONS}
        kwargs: dict = {
            "content": question_line(question),
            "embed": discord.Embed.from_dict(answer_embed(answer)),
            "allowed_mentions": NO_MENTIONS,
        }
        if answer.citations:
            kwargs["view"] = PassagesView(self._remember(answer))
        return kwargs

    def _limited(self, user_id: int) -> float | None:
        return self.cooldown.update_rate_limit(user_id)

    @staticmethod
    def _slow_down(retry: float) -> str:
        return f"You're asking quickly: please wait {retry:.0f} s before the next question."

    @app_commands.command(name="ask", description="Ask a question about the shared articles")
    @app_commands.describe(question="What do you want to know?")
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        retry = self._limited(interaction.user.id)
        if retry:
            await interaction.response.send_message(
                self._slow_down(retry), ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        # Acknowledge at once: Discord drops interactions not answered within 3 seconds.
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(**await self.answer_message(question))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.user is None:
            return
        mentioned = self.bot.user in message.mentions
        in_answer_channel = message.channel.id in self.bot.engine.settings.answer_channels
        if not (mentioned or in_answer_channel):
            return
        question = _MENTION.sub(" ", message.content).strip()
        retry = self._limited(message.author.id)
        if retry:
            await message.reply(self._slow_down(retry), allowed_mentions=NO_MENTIONS)
            return
        async with message.channel.typing():
            reply = await self.answer_message(question)
        if self.bot.engine.settings.reply_in_thread and isinstance(message.channel, discord.TextChannel):
            thread = await message.create_thread(name=(question or "question")[:100])
            await thread.send(**reply)
        else:
            await message.reply(**reply)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if interaction.type is not discord.InteractionType.component or not custom_id.startswith(
            "newsbot:passages:"
        ):
            return
        answer = self.recent.get(custom_id.rsplit(":", 1)[1])
        if answer is None:
            await interaction.response.send_message(
                "Those passages are no longer at hand; ask again to see them.", ephemeral=True
            )
            return
        embed = discord.Embed(title="Cited passages", description=passages_text(answer.citations))
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- the store --------------------------------------------------------------------------
    @app_commands.command(name="stats", description="What the bot knows: articles, passages, last update")
    async def stats(self, interaction: discord.Interaction) -> None:
        stats = await self.bot.run_blocking(self.bot.engine.searcher.stats)
        updated = f"<t:{int(stats['updated'])}:R>" if stats.get("updated") else "never"  # type: ignore[call-overload]
        text = (
            f"**{stats['articles']}** articles, **{stats['passages']}** passages, "
            f"last update {updated}, model `{stats['model']}`."
        )
        await interaction.response.send_message(text, allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="reindex", description="Re-read the configured article folders (Manage Server)"
    )
    @app_commands.default_permissions(manage_guild=True)
    async def reindex(self, interaction: discord.Interaction) -> None:
        permissions = getattr(interaction.user, "guild_permissions", None)
        if permissions is None or not permissions.manage_guild:
            await interaction.response.send_message(
                "Sorry, only members with the Manage Server permission can reindex.", ephemeral=True
            )
            return
        folders = self.bot.engine.settings.article_dirs
        if not folders:
            await interaction.response.send_message(
                "No article folders are configured (article_dirs in config/newsbot.toml).", ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        try:
            report = await self.bot.run_blocking(self.bot.engine.ingest, folders, prune=True, wait=600)
        except Exception:
            log.exception("reindex failed")
            await interaction.followup.send(APOLOGY, allowed_mentions=NO_MENTIONS)
            return
        await interaction.followup.send(f"Reindexed: {report.summary()}.", allowed_mentions=NO_MENTIONS)


async def setup(bot: NewsBot) -> None:
    await bot.add_cog(Questions(bot))
