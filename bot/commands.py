"""What people do with the bot: /ask, mentions, "Show passages", /stats and /reindex."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.markup import plain_text
from bot.render import answer_embed, embed_as_text, passages_text, question_line
from bot.sharing import shared_items
from embeddings import feedback
from embeddings.answer import QuestionError, check_question
from embeddings.conversation import Conversation, Conversations
from embeddings.records import Answer

if TYPE_CHECKING:
    from bot.client import NewsBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
APOLOGY = "Sorry, something went wrong while answering that. The error is logged; please try again."


# What the bot needs in a channel to answer there, by the attribute discord.Permissions gives it.
NEEDED = {
    "view_channel": "View Channels",
    "send_messages": "Send Messages",
    "embed_links": "Embed Links",
    "read_message_history": "Read Message History",
}


def missing_permissions(channel: Any) -> list[str]:
    """The permissions the bot lacks in ``channel``, as the guild's roles and overwrites say."""
    guild = getattr(channel, "guild", None)
    if guild is None or guild.me is None:
        return []
    permissions = channel.permissions_for(guild.me)
    needed = dict(NEEDED)
    if isinstance(channel, discord.Thread):
        del needed["send_messages"]
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    return [label for name, label in needed.items() if not getattr(permissions, name)]


def why(error: discord.HTTPException) -> str:
    """An HTTP error as Discord words it, on one line."""
    text = " ".join(str(error.text or "").split())[:200]
    return f"{error.status} {error.response.reason if error.response is not None else ''}".strip() + (
        f": {text}" if text else ""
    )


def plain(reply: dict[str, Any]) -> dict[str, Any]:
    """The same reply as plain text within Discord's 2,000 characters, without embed or buttons."""
    embed = reply.get("embed")
    content = embed_as_text(reply.get("content"), embed.to_dict()) if embed else reply.get("content")
    return {"content": content, "allowed_mentions": reply.get("allowed_mentions", NO_MENTIONS)}


async def deliver(
    send: Callable[..., Awaitable[Any]], reply: dict[str, Any], channel: Any, where: str
) -> Any:
    """Send a reply; what ``send`` returned (the message) once delivered, None when it could not be.
    An embed Discord refuses goes again as plain text; a send refused for want of permissions is one
    log line naming them. Never raises HTTPException."""
    try:
        return await send(**reply)
    except discord.Forbidden as error:
        missing = missing_permissions(channel)
        log.warning(
            "cannot send %s in %s (%s): the bot needs %s there",
            where,
            getattr(channel, "name", channel),
            why(error),
            " and ".join(missing) if missing else "Send Messages and Embed Links",
        )
        if "embed" not in reply or missing != ["Embed Links"]:
            return None  # only a missing Embed Links leaves plain text a way through
    except discord.HTTPException as error:
        if "embed" not in reply or error.status >= 500 or error.status == 429:
            log.warning("cannot send %s (%s)", where, why(error))
            return None
        log.warning("Discord refused the embed of %s (%s); sending it as plain text", where, why(error))
    try:
        return await send(**plain(reply))
    except discord.HTTPException as error:
        log.warning("cannot send %s as plain text either (%s)", where, why(error))
        return None


@contextlib.asynccontextmanager
async def typing_in(channel: Any) -> AsyncIterator[None]:
    """The typing indicator while an answer is worked out, when Discord allows it; nothing when not."""
    typing = channel.typing()
    try:
        await typing.__aenter__()
    except discord.HTTPException as error:
        log.info("no typing indicator in %s (%s)", getattr(channel, "name", channel), why(error))
        yield
        return
    try:
        yield
    finally:
        await typing.__aexit__(None, None, None)


class PassagesView(discord.ui.View):
    """Under an answer: "Show passages" (to whoever clicks, and only to them), and 👍 / 👎 votes."""

    def __init__(self, key: str) -> None:
        super().__init__(timeout=None)
        self.add_item(
            discord.ui.Button(
                label="Show passages",
                style=discord.ButtonStyle.secondary,
                custom_id=f"newsbot:passages:{key}",
            )
        )
        for vote, emoji in (("up", "👍"), ("down", "👎")):
            self.add_item(
                discord.ui.Button(
                    emoji=emoji, style=discord.ButtonStyle.secondary, custom_id=f"newsbot:vote:{vote}:{key}"
                )
            )


def _looks_like_question(text: str) -> bool:
    """A question mark, or enough words to be one: what a reply or thread message needs to be answered."""
    return "?" in text or len(text.split()) >= 4


def guild_of(guild: discord.Guild | None) -> int:
    """The scope a question is answered in: its guild; 0 (folder and feed articles only) in a DM."""
    return guild.id if guild is not None else 0


class Questions(commands.Cog):
    def __init__(self, bot: NewsBot) -> None:
        self.bot = bot
        settings = bot.engine.settings
        self.cooldown: commands.CooldownMapping[int] = commands.CooldownMapping(
            commands.Cooldown(settings.cooldown_questions, settings.cooldown_seconds), lambda user_id: user_id
        )
        # Recent answers by key, for the "Show passages" and vote buttons.
        self.recent: OrderedDict[str, Answer] = OrderedDict()
        # Follow-ups: conversations by ("message", answer id) for reply chains, ("thread", id) for threads.
        self.conversations = Conversations(
            ttl=settings.conversation_minutes * 60, max_turns=settings.conversation_turns
        )

    # -- answering ------------------------------------------------------------------------
    def _remember(self, answer: Answer) -> str:
        key = f"{time.time_ns():x}"
        self.recent[key] = answer
        while len(self.recent) > 500:
            self.recent.popitem(last=False)
        return key

    async def answer_message(
        self, question: str, *, conversation: Conversation | None = None, guild: int | None = None
    ) -> dict:
        """The keyword arguments of a reply: an embed, the buttons, and no pings, whatever happens.

        ``conversation``: answer in its context (and add the turn); ``guild``: from what it can see."""
        try:
            question = check_question(question, self.bot.engine.settings.max_question_chars)
        except QuestionError as err:
            return {"content": f"I can't answer that: {err}.", "allowed_mentions": NO_MENTIONS}
        try:
            answer = await self.bot.run_blocking(
                self.bot.engine.ask, question, conversation=conversation, guild=guild
            )
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
        question = plain_text(question)
        retry = self._limited(interaction.user.id)
        if retry:
            await interaction.response.send_message(
                self._slow_down(retry), ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        # Acknowledge at once: Discord drops interactions not answered within 3 seconds.
        try:
            await interaction.response.defer(thinking=True)
            deferred = True
        except discord.HTTPException as error:
            log.warning("could not acknowledge /ask (%s); answering in the channel instead", why(error))
            deferred = False
        conversation = Conversation(self.conversations.max_turns)
        self.conversations.link(("interaction", interaction.id), conversation)
        reply = await self.answer_message(
            question, conversation=conversation, guild=guild_of(interaction.guild)
        )
        sent = None
        if deferred:
            followup = functools.partial(interaction.followup.send, wait=True)
            sent = await deliver(followup, reply, interaction.channel, "the /ask follow-up")
        if sent is None:
            sent = await self.tell_in_channel(interaction, question, reply)
        if sent is not None:
            # A reply to the answer is a follow-up in this conversation.
            self.conversations.link(("message", sent.id), conversation)

    async def tell_in_channel(self, interaction: discord.Interaction, question: str, reply: dict) -> Any:
        """When the interaction itself cannot carry the answer, the asker still gets it in the channel."""
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("the /ask answer for %s could not be delivered anywhere", interaction.user)
            return None
        reply = {
            **reply,
            "content": f"{interaction.user.mention} {question_line(question)}",
            # Only the asker is pinged: the answer did not come where they asked for it.
            "allowed_mentions": discord.AllowedMentions(
                everyone=False, roles=False, users=[interaction.user]
            ),
        }
        return await deliver(channel.send, reply, channel, "the /ask answer")

    def _conversation_of(self, message: discord.Message) -> Conversation | None:
        """The conversation a message continues: a reply to one of the bot's answers, or a message
        in a thread the bot answered in; a fresh one when the bot's answer is no longer remembered."""
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            known = self.conversations.get(("message", reference.message_id))
            if known is not None:
                return known
            replied = reference.resolved
            if (
                isinstance(replied, discord.Message)
                and self.bot.user is not None
                and replied.author == self.bot.user
            ):
                # The answer may be so fresh that its id is not filed yet: what it answered is.
                asked = replied.reference.message_id if replied.reference is not None else None
                metadata = replied.interaction_metadata
                for key in (("message", asked), ("interaction", metadata.id if metadata else None)):
                    if key[1] is not None and (known := self.conversations.get(key)) is not None:
                        return known
                return Conversation(self.conversations.max_turns)
        if isinstance(message.channel, discord.Thread):
            return self.conversations.get(("thread", message.channel.id))
        return None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.user is None:
            return
        settings = self.bot.engine.settings
        if shared_items(message, self.bot.user, settings.article_channels):
            return  # articles to store, not a question: the Sharing cog takes it
        conversation = self._conversation_of(message)
        mentioned = self.bot.user in message.mentions
        in_answer_channel = message.channel.id in settings.answer_channels
        if not (mentioned or in_answer_channel or conversation is not None):
            return
        question = plain_text(message.content)
        if not (mentioned or in_answer_channel) and not _looks_like_question(question):
            return  # "thanks!" in a thread the bot answered in is chat, not a follow-up
        retry = self._limited(message.author.id)
        if retry:
            await message.reply(self._slow_down(retry), allowed_mentions=NO_MENTIONS)
            return
        conversation = conversation or Conversation(self.conversations.max_turns)
        # Filed under the question too: a reply to the answer finds it even before the answer's id is.
        self.conversations.link(("message", message.id), conversation)
        async with typing_in(message.channel):
            reply = await self.answer_message(
                question, conversation=conversation, guild=guild_of(message.guild)
            )
        sent = None
        if settings.reply_in_thread and isinstance(message.channel, discord.TextChannel):
            try:
                thread = await message.create_thread(name=(question or "question")[:100])
            except discord.HTTPException as error:
                log.warning("cannot open a thread for the answer (%s); replying in the channel", why(error))
            else:
                sent = await deliver(thread.send, reply, thread, "the answer")
                self.conversations.link(("thread", thread.id), conversation)
        if sent is None:
            sent = await deliver(message.reply, reply, message.channel, "the answer")
            if isinstance(message.channel, discord.Thread):
                self.conversations.link(("thread", message.channel.id), conversation)
        if sent is not None:
            self.conversations.link(("message", sent.id), conversation)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if interaction.type is not discord.InteractionType.component:
            return
        if custom_id.startswith("newsbot:vote:"):
            await self.vote(interaction, custom_id)
            return
        if not custom_id.startswith("newsbot:passages:"):
            return
        answer = self.recent.get(custom_id.rsplit(":", 1)[1])
        if answer is None:
            reply: dict[str, Any] = {
                "content": "Those passages are no longer at hand; ask again to see them."
            }
        else:
            embed = discord.Embed(title="Cited passages", description=passages_text(answer.citations))
            reply = {"embed": embed, "allowed_mentions": NO_MENTIONS}
        await deliver(
            functools.partial(interaction.response.send_message, ephemeral=True),
            reply,
            interaction.channel,
            "the cited passages",
        )

    async def vote(self, interaction: discord.Interaction, custom_id: str) -> None:
        """A 👍 / 👎 click: stored with the answer; a second click by the same person replaces the first."""
        _, _, direction, key = custom_id.split(":", 3)
        answer = self.recent.get(key)
        if answer is None:
            await interaction.response.send_message(
                "That answer is too old to rate now; thanks all the same.", ephemeral=True
            )
            return
        vote = feedback.UP if direction == "up" else feedback.DOWN
        await self.bot.run_blocking(
            feedback.record_vote,
            self.bot.engine.store_path,
            key,
            answer,
            user_id=interaction.user.id,
            guild=guild_of(interaction.guild),
            vote=vote,
        )
        await interaction.response.send_message(
            f"Thanks: noted {'👍' if vote == feedback.UP else '👎'} (click the other one to change it).",
            ephemeral=True,
        )

    # -- the store --------------------------------------------------------------------------
    @app_commands.command(name="stats", description="What the bot knows: articles, passages, last update")
    async def stats(self, interaction: discord.Interaction) -> None:
        # What the asker's server can see: folder and feed articles, and those shared there.
        stats = await self.bot.run_blocking(self.bot.engine.searcher.stats, guild_of(interaction.guild))
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
