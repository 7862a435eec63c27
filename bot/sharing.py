"""Articles shared in Discord: links and text files in article channels, @mentions with a link, /add
and /forget. What is fetched and refused is embeddings/links.py's business; here are Discord's parts:
who may share how often, the acknowledgement, and the guild each article belongs to."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from embeddings.links import find_links
from embeddings.sharing import TEXT_ATTACHMENTS, Shared, Sharer

if TYPE_CHECKING:
    from bot.client import NewsBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
ADDED = "📰"  # the reaction on a message whose articles were all stored
# At most this many links or files are read from one message.
PER_MESSAGE = 5


def shared_items(
    message: discord.Message, bot_user: discord.abc.User, article_channels: tuple[int, ...]
) -> bool:
    """Whether a message shares articles (and is no question): links or text files in an article
    channel, or a link in a message that @mentions the bot anywhere."""
    links = find_links(message.content)
    channel = message.channel
    parent = getattr(channel, "parent_id", None)
    if channel.id in article_channels or (parent is not None and parent in article_channels):
        return bool(links) or any(a.filename.lower().endswith(TEXT_ATTACHMENTS) for a in message.attachments)
    return bot_user in message.mentions and bool(links)


def _line(result: Shared) -> str:
    if result.ok:
        title = result.title or result.what
        return f"{'Already known' if result.known else 'Added'}: “{title[:150]}”"
    return f"Not added: <{result.what[:200]}>: {result.reason}"


class Sharing(commands.Cog):
    def __init__(self, bot: NewsBot) -> None:
        self.bot = bot
        settings = bot.engine.settings
        self.sharer = Sharer(bot.engine, bot.run_blocking)
        window = settings.share_window_seconds
        self.per_user: commands.CooldownMapping[int] = commands.CooldownMapping(
            commands.Cooldown(settings.share_user_limit, window), lambda key: key
        )
        self.per_guild: commands.CooldownMapping[int] = commands.CooldownMapping(
            commands.Cooldown(settings.share_guild_limit, window), lambda key: key
        )

    def _limited(self, user_id: int, guild_id: int) -> str | None:
        # Checked per link: one message with many links spends as many.
        retry = self.per_user.update_rate_limit(user_id)
        if retry:
            return f"you are sharing quickly: try again in {retry:.0f} s"
        retry = self.per_guild.update_rate_limit(guild_id)
        if retry:
            return f"this server is sharing quickly: try again in {retry:.0f} s"
        return None

    async def share(self, guild_id: int, user_id: int, url: str) -> Shared:
        limited = self._limited(user_id, guild_id)
        if limited:
            return Shared(url, False, reason=limited)
        try:
            return await self.sharer.share_link(guild_id, url)
        except Exception:
            log.exception("sharing %s failed", url[:200])
            return Shared(url, False, reason="something went wrong while storing it (logged)")

    async def share_attachment(
        self, guild_id: int, user_id: int, attachment: discord.Attachment, link: str
    ) -> Shared:
        name = attachment.filename
        limit = self.bot.engine.settings.fetch_max_mb
        if attachment.size > limit * 1024 * 1024:
            return Shared(name, False, reason=f"the file is over the {limit:g} MB limit")
        limited = self._limited(user_id, guild_id)
        if limited:
            return Shared(name, False, reason=limited)
        try:
            data = await attachment.read()
            # The attachment's address without its signature: the same file is the same item.
            key = attachment.url.split("?", 1)[0]
            return await self.sharer.share_file(guild_id, name, data, key=key, link=link)
        except discord.HTTPException as err:
            return Shared(name, False, reason=f"Discord did not hand over the file ({err.status})")
        except Exception:
            log.exception("storing attachment %s failed", name)
            return Shared(name, False, reason="something went wrong while storing it (logged)")

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.user is None or message.guild is None:
            return
        if not shared_items(message, self.bot.user, self.bot.engine.settings.article_channels):
            return
        guild_id, user_id = message.guild.id, message.author.id
        results: list[Shared] = []
        async with message.channel.typing():
            for url in find_links(message.content)[:PER_MESSAGE]:
                results.append(await self.share(guild_id, user_id, url))
            files = [a for a in message.attachments if a.filename.lower().endswith(TEXT_ATTACHMENTS)]
            for attachment in files[: max(PER_MESSAGE - len(results), 0)]:
                results.append(await self.share_attachment(guild_id, user_id, attachment, message.jump_url))
        if not results:
            return
        # Either acknowledgement may be refused (no Add Reactions permission, say): each is tried.
        if all(r.ok for r in results):
            try:
                await message.add_reaction(ADDED)
            except discord.HTTPException as err:
                log.warning("could not react to a shared link (%s)", err)
        try:
            await message.reply("\n".join(_line(r) for r in results), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.exception("could not acknowledge shared articles")

    @app_commands.command(name="add", description="Add a web page to the articles this server can ask about")
    @app_commands.describe(url="The page's address (http or https)")
    @app_commands.guild_only()
    async def add(self, interaction: discord.Interaction, url: str) -> None:
        if interaction.guild_id is None:
            await interaction.response.send_message("Articles are added in a server.", ephemeral=True)
            return
        links = find_links(url)
        if not links:
            await interaction.response.send_message(
                "That is not an http or https link.", ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        await interaction.response.defer(thinking=True)
        result = await self.share(interaction.guild_id, interaction.user.id, links[0])
        await interaction.followup.send(_line(result), allowed_mentions=NO_MENTIONS)

    @app_commands.command(
        name="forget", description="Remove an article shared in this server (Manage Messages)"
    )
    @app_commands.describe(url="The address it was shared with")
    @app_commands.default_permissions(manage_messages=True)
    @app_commands.guild_only()
    async def forget(self, interaction: discord.Interaction, url: str) -> None:
        permissions = getattr(interaction.user, "guild_permissions", None)
        if interaction.guild_id is None or permissions is None or not permissions.manage_messages:
            await interaction.response.send_message(
                "Sorry, only members with the Manage Messages permission can remove articles.", ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        try:
            removed = await self.sharer.forget(interaction.guild_id, url.strip().strip("<>"))
        except Exception:
            log.exception("forgetting %s failed", url[:200])
            await interaction.followup.send(
                "Sorry, something went wrong while removing it. The error is logged.",
                allowed_mentions=NO_MENTIONS,
            )
            return
        text = (
            f"Removed {removed} article{'s' if removed != 1 else ''} shared here as <{url[:200]}>."
            if removed
            else "Nothing shared in this server under that address."
        )
        await interaction.followup.send(text, allowed_mentions=NO_MENTIONS)
