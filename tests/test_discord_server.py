"""The fake Discord server carries the real, unpatched discord.py client: a test per piece bot tests use.

The bot here is a minimal stand-in written for these tests, not newsbot's bot.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_server import CallbackType, FakeDiscord


class SourcesView(discord.ui.View):
    def __init__(self) -> None:
        # No timeout: a pending view timer would outlive the client and warn at loop shutdown.
        super().__init__(timeout=None)

    @discord.ui.button(label="Sources", custom_id="sources")
    async def sources(self, interaction: discord.Interaction, button: discord.ui.Button[SourcesView]) -> None:
        await interaction.response.send_message("1. example.com/article", ephemeral=True)

    @discord.ui.select(custom_id="detail", options=[discord.SelectOption(label=v) for v in ("short", "long")])
    async def detail(self, interaction: discord.Interaction, select: discord.ui.Select[SourcesView]) -> None:
        await interaction.response.edit_message(content=f"detail: {select.values[0]}")


@app_commands.command(description="Ask a question")
async def ask(interaction: discord.Interaction, question: str, detailed: bool = False) -> None:
    await interaction.response.defer(thinking=True)
    assert isinstance(interaction.user, discord.Member)
    admin = interaction.user.guild_permissions.manage_guild
    await interaction.followup.send(f"{question} -> 42 (admin={admin}, detailed={detailed})")


@app_commands.command(description="Summarise privately")
async def brief(interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    await interaction.edit_original_response(content="short summary")


@app_commands.command(description="Show the invoker's channel permissions")
async def whoami(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(f"manage_messages={interaction.permissions.manage_messages}")


class EchoBot(commands.Bot):
    """Replies to mentions (with a button and a select), and has guild slash commands that defer or not."""

    def __init__(self, guild_id: int, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        # guild_ready_timeout: on_ready waits this long after the last GUILD_CREATE (2 s by default).
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.seen: list[discord.Message] = []
        self.command_errors: list[app_commands.AppCommandError] = []

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)
        self.tree.add_command(ask, guild=guild)
        self.tree.add_command(brief, guild=guild)
        self.tree.add_command(whoami, guild=guild)
        self.tree.error(self.on_app_command_error)
        await self.tree.sync(guild=guild)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.command_errors.append(error)

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)
        if message.author.bot or self.user not in message.mentions:
            return
        assert isinstance(message.author, discord.Member)
        admin = message.author.guild_permissions.manage_guild
        await message.reply(
            f"hello {message.author.name} (admin={admin}) in {message.guild}",
            allowed_mentions=discord.AllowedMentions.none(),
            view=SourcesView(),
        )


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval=0.2) as fake:
        yield fake
        # Every test's traffic must be something the fake understands.
        assert fake.unhandled == []


@pytest.fixture
async def bot(server: FakeDiscord) -> AsyncIterator[EchoBot]:
    echo_bot = EchoBot(server.guild_id)
    async with server.running(echo_bot):
        yield echo_bot


async def test_bot_gets_ready_quickly_over_the_compressed_gateway(server: FakeDiscord) -> None:
    echo_bot = EchoBot(server.guild_id)
    started = time.monotonic()
    async with server.running(echo_bot):
        assert time.monotonic() - started < 2.0
        assert echo_bot.user is not None and echo_bot.user.id == server.bot_user.id
        guild = echo_bot.get_guild(server.guild_id)
        assert guild is not None and guild.me is not None
        assert isinstance(guild.get_channel(server.channel_id), discord.TextChannel)
        assert guild.get_role(server.admin_role_id) is not None

    connection = server.connections[0]
    # Whichever of zlib-stream / zstd-stream this discord.py picked, frames were compressed its way.
    assert connection.compress == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    assert (
        connection.identify is not None
        and connection.identify["intents"] & discord.Intents.message_content.flag
    )
    assert [r.kind for r in server.records] == ["commands_sync"]
    assert server.problems == []


async def test_mention_is_answered_with_a_reply_that_pings_nobody(server: FakeDiscord, bot: EchoBot) -> None:
    message_id = await server.send_message(f"{server.bot_user.mention} hi", author=server.admin)

    reply = await server.wait_for_message(lambda r: r.reply_to == message_id)

    assert reply.kind == "message" and reply.channel_id == server.channel_id
    assert reply.content == "hello alice (admin=True) in News Club"
    assert reply.allowed_mentions == {"parse": []}
    assert reply.message is not None and reply.message["mentions"] == []
    assert reply.components[0]["components"][0]["custom_id"] == "sources"
    # The bot saw its own reply echoed back over the gateway and did not answer itself.
    await server.wait_until(lambda: any(m.id == reply.message_id for m in bot.seen))
    assert [r.kind for r in server.records].count("message") == 1
    assert server.problems == []


async def test_guild_permissions_follow_the_members_roles(server: FakeDiscord, bot: EchoBot) -> None:
    carol = server.add_member("carol", role_ids=[server.admin_role_id])
    bob_message_id = await server.send_message(f"hey {server.bot_user.mention}", author=server.user)
    carol_message_id = await server.send_message(f"hey {server.bot_user.mention}", author=carol)

    bob_reply = await server.wait_for_message(lambda r: r.reply_to == bob_message_id)
    carol_reply = await server.wait_for_message(lambda r: r.reply_to == carol_message_id)

    assert bob_reply.content == "hello bob (admin=False) in News Club"
    assert carol_reply.content == "hello carol (admin=True) in News Club"


async def test_without_message_content_intent_only_mentions_carry_content(server: FakeDiscord) -> None:
    echo_bot = EchoBot(server.guild_id, message_content=False)
    async with server.running(echo_bot):
        await server.send_message("no mention here")
        await server.send_message(f"{server.bot_user.mention} with mention")
        await server.wait_until(lambda: len(echo_bot.seen) >= 2)

    assert [m.content for m in echo_bot.seen[:2]] == ["", f"{server.bot_user.mention} with mention"]


async def test_slash_command_is_deferred_then_followed_up(server: FakeDiscord, bot: EchoBot) -> None:
    synced = await bot.tree.fetch_commands(guild=discord.Object(server.guild_id))
    assert [c.name for c in synced] == ["ask", "brief", "whoami"]

    interaction = await server.send_slash_command("ask", {"question": "why?"}, user=server.admin)

    answer = await server.wait_for_message(lambda r: r.interaction_id == interaction.id)
    deferral = next(r for r in server.records if r.kind == "interaction_callback")
    assert deferral.callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert interaction.acked_at is not None and interaction.acked_at - interaction.dispatched_at < 1.0
    assert answer.kind == "followup"
    assert answer.content == "why? -> 42 (admin=True, detailed=False)"
    # As on Discord, the first follow-up after a defer fills the "thinking" message instead of a new one.
    assert answer.message_id == deferral.message_id == interaction.original_message_id
    assert answer.message is not None and answer.message["flags"] == 0
    assert server.problems == []


async def test_ephemeral_defer_then_edit_of_the_original(server: FakeDiscord, bot: EchoBot) -> None:
    interaction = await server.send_slash_command("brief")

    answer = await server.wait_for_message(lambda r: r.interaction_id == interaction.id)

    deferral = next(r for r in server.records if r.kind == "interaction_callback")
    assert deferral.callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE and deferral.ephemeral
    assert answer.kind == "original_edit" and answer.content == "short summary" and answer.ephemeral
    assert answer.message is not None and answer.message["flags"] == 64  # LOADING (128) cleared
    assert server.problems == []


async def test_slash_command_options_are_typed_from_the_synced_definition(
    server: FakeDiscord, bot: EchoBot
) -> None:
    interaction = await server.send_slash_command("ask", {"question": "how?", "detailed": True})

    answer = await server.wait_for_message(lambda r: r.interaction_id == interaction.id)

    assert answer.content == "how? -> 42 (admin=False, detailed=True)"
    with pytest.raises(ValueError, match="no options"):
        await server.send_slash_command("ask", {"question": "x", "colour": "red"})
    with pytest.raises(LookupError):
        await server.send_slash_command("unsynced")


async def test_button_click_is_answered_ephemerally(server: FakeDiscord, bot: EchoBot) -> None:
    message_id = await server.send_message(f"{server.bot_user.mention} hi")
    reply = await server.wait_for_message(lambda r: r.reply_to == message_id)
    assert reply.message_id is not None

    click = await server.send_component_interaction(reply.message_id, "sources")

    response = await server.wait_for_message(lambda r: r.interaction_id == click.id)
    assert response.callback_type is CallbackType.CHANNEL_MESSAGE
    assert response.content == "1. example.com/article" and response.ephemeral
    assert server.problems == []


async def test_select_choice_updates_the_message(server: FakeDiscord, bot: EchoBot) -> None:
    message_id = await server.send_message(f"{server.bot_user.mention} hi")
    reply = await server.wait_for_message(lambda r: r.reply_to == message_id)
    assert reply.message_id is not None

    choice = await server.send_component_interaction(reply.message_id, "detail", values=["long"])

    update = await server.wait_for_message(lambda r: r.interaction_id == choice.id)
    assert update.callback_type is CallbackType.UPDATE_MESSAGE and update.message_id == reply.message_id
    assert server.messages[reply.message_id]["content"] == "detail: long"
    assert server.problems == []


async def test_member_permissions_override_the_channel_permissions(server: FakeDiscord, bot: EchoBot) -> None:
    plain = await server.send_slash_command("whoami")
    moderator = await server.send_slash_command(
        "whoami", member_permissions=discord.Permissions(manage_messages=True).value
    )

    plain_answer = await server.wait_for_message(lambda r: r.interaction_id == plain.id)
    moderator_answer = await server.wait_for_message(lambda r: r.interaction_id == moderator.id)

    assert plain_answer.content == "manage_messages=False"
    assert moderator_answer.content == "manage_messages=True"


async def test_responding_after_the_deadline_gets_unknown_interaction(
    server: FakeDiscord, bot: EchoBot
) -> None:
    server.interaction_deadline = 0.0

    await server.send_slash_command("ask", {"question": "late"})

    await server.wait_until(lambda: bot.command_errors)
    error = bot.command_errors[0]
    assert isinstance(error, app_commands.CommandInvokeError) and isinstance(error.original, discord.NotFound)
    assert error.original.code == 10062
    assert [r.error["code"] for r in server.rejections] == [10062]


async def test_second_acknowledgement_is_rejected(server: FakeDiscord, bot: EchoBot) -> None:
    interaction = await server.send_slash_command("ask", {"question": "twice"})
    await server.wait_for_message(lambda r: r.interaction_id == interaction.id)

    url = f"{server.base_url}/interactions/{interaction.id}/{interaction.token}/callback"
    async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as response:
        assert response.status == 400
        assert (await response.json())["code"] == 40060


async def test_heartbeats_are_acknowledged_on_schedule(server: FakeDiscord, bot: EchoBot) -> None:
    beats = await server.wait_for_heartbeats(4, timeout=3.0)

    assert all(b.acked_at is not None and b.acked_at - b.received_at < 0.1 for b in beats)
    # discord.py beats once on HELLO, then every heartbeat_interval (0.2 s here).
    gaps = [later.received_at - earlier.received_at for earlier, later in itertools.pairwise(beats)]
    assert all(0.1 < gap < 0.7 for gap in gaps), gaps
    assert bot.latency < 0.5


async def test_wrong_token_raises_login_failure(server: FakeDiscord) -> None:
    echo_bot = EchoBot(server.guild_id)

    try:
        with pytest.raises(discord.LoginFailure):
            await echo_bot.start("not-the-token")
    finally:
        await echo_bot.close()  # start() itself leaves the HTTP session open when login fails

    assert [r.status for r in server.rejections] == [401]


def _embed_with_fields(count: int) -> discord.Embed:
    embed = discord.Embed()
    for index in range(count):
        embed.add_field(name=f"field {index}", value="value")
    return embed


@pytest.mark.parametrize(
    ("kwargs", "code", "error_path"),
    [
        ({"content": "x" * 2001}, 50035, "content"),
        ({"embed": discord.Embed(title="t" * 257)}, 50035, "embeds.0.title"),
        ({"embed": discord.Embed(description="d" * 4097)}, 50035, "embeds.0.description"),
        ({"embed": discord.Embed().add_field(name="n" * 257, value="v")}, 50035, "embeds.0.fields.0.name"),
        ({"embed": discord.Embed().add_field(name="n", value="v" * 1025)}, 50035, "embeds.0.fields.0.value"),
        ({"embed": discord.Embed().add_field(name="n", value=" ")}, 50035, "embeds.0.fields.0.value"),
        ({"embed": _embed_with_fields(26)}, 50035, "embeds.0.fields"),
        (
            {"embeds": [discord.Embed(description="d" * 3001), discord.Embed(description="d" * 3000)]},
            50035,
            "embeds",
        ),
        ({"content": "   "}, 50006, None),
    ],
    ids=[
        "content",
        "title",
        "description",
        "field-name",
        "field-value",
        "blank-field",
        "25-fields",
        "6000-chars",
        "empty",
    ],
)
async def test_messages_are_validated_like_discord(
    server: FakeDiscord, bot: EchoBot, kwargs: dict[str, object], code: int, error_path: str | None
) -> None:
    channel = bot.get_channel(server.channel_id)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as raised:
        await channel.send(**kwargs)  # type: ignore[call-overload]

    assert raised.value.status == 400 and raised.value.code == code
    [rejection] = server.rejections
    if error_path is not None:
        node = rejection.error["errors"]
        for key in error_path.split("."):
            node = node[key]
        assert node["_errors"]
    assert not any(r.kind == "message" for r in server.records)


async def test_more_than_ten_embeds_are_rejected(server: FakeDiscord) -> None:
    # discord.py refuses this itself, so send it raw.
    url = f"{server.base_url}/channels/{server.channel_id}/messages"
    body = {"embeds": [{"title": str(i)} for i in range(11)]}
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        assert response.status == 400
        error = await response.json()

    assert (
        error["code"] == 50035 and error["errors"]["embeds"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    )


async def test_files_typing_edits_reactions_history_and_deletes(server: FakeDiscord, bot: EchoBot) -> None:
    channel = bot.get_channel(server.channel_id)
    assert isinstance(channel, discord.TextChannel)

    async with channel.typing():
        message = await channel.send("draft", file=discord.File(io.BytesIO(b"notes"), "notes.txt"))
    await message.edit(content="final")
    await message.add_reaction("\N{THUMBS UP SIGN}")
    history = [m.id async for m in channel.history(limit=10)]
    await message.delete()
    user_message_id = await server.send_message("not yours")
    with pytest.raises(discord.Forbidden):
        await (await channel.fetch_message(user_message_id)).edit(content="mine now")

    kinds = [r.kind for r in server.records]
    assert kinds[kinds.index("typing") :] == [
        "typing",
        "message",
        "message_edit",
        "reaction_add",
        "message_delete",
    ]
    sent, edit, reaction = (
        next(r for r in server.records if r.kind == k) for k in ("message", "message_edit", "reaction_add")
    )
    assert sent.files == ("notes.txt",) and message.attachments[0].filename == "notes.txt"
    assert edit.message is not None and edit.message["content"] == "final"
    assert reaction.body == {"emoji": "\N{THUMBS UP SIGN}"}
    assert history == [message.id]
    assert message.id not in server.messages
    assert [r.status for r in server.rejections] == [403]


async def test_thread_from_a_message_carries_the_conversation(server: FakeDiscord, bot: EchoBot) -> None:
    question_id = await server.send_message("what happened today?")
    channel = bot.get_channel(server.channel_id)
    assert isinstance(channel, discord.TextChannel)
    question = await channel.fetch_message(question_id)

    thread = await question.create_thread(name="what happened today?")
    await thread.send("Here is what happened.")
    follow_up_id = await server.send_message(f"{server.bot_user.mention} and then?", channel_id=thread.id)
    reply = await server.wait_for_message(lambda r: r.reply_to == follow_up_id)

    # Discord gives a thread started from a message the message's id, and announces it with THREAD_CREATE.
    assert thread.id == question_id and thread.type is discord.ChannelType.public_thread
    assert isinstance(bot.get_channel(thread.id), discord.Thread)
    assert [(r.kind, r.channel_id) for r in server.records if r.kind in ("thread_create", "message")] == [
        ("thread_create", thread.id),
        ("message", thread.id),
        ("message", thread.id),
    ]
    assert reply.content is not None and reply.content.startswith("hello bob")

    standalone = await channel.create_thread(name="daily digest", type=discord.ChannelType.public_thread)
    fetched = await bot.fetch_channel(standalone.id)
    assert isinstance(fetched, discord.Thread) and fetched.parent_id == server.channel_id
    assert server.problems == []


async def test_client_resumes_after_a_reconnect_request(server: FakeDiscord, bot: EchoBot) -> None:
    await server.reconnect_gateway()
    await server.wait_until(lambda: len(server.connections) == 2 and server.connections[1].resumed)

    message_id = await server.send_message(f"{server.bot_user.mention} still there?")

    await server.wait_for_message(lambda r: r.reply_to == message_id)
    assert server.connections[1].identify is None  # resumed, not a fresh IDENTIFY
    assert server.problems == []


async def test_member_chunk_requests_are_answered(server: FakeDiscord) -> None:
    everything_bot = commands.Bot(command_prefix="!", intents=discord.Intents.all(), guild_ready_timeout=0.05)
    async with server.running(everything_bot):
        guild = everything_bot.get_guild(server.guild_id)
        assert guild is not None

        members = await asyncio.wait_for(guild.chunk(), timeout=2)

    assert {m.id for m in members} == set(server.members)
    assert server.problems == []


async def test_auto_sharded_bot_connects_too(server: FakeDiscord) -> None:
    sharded = commands.AutoShardedBot(
        command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05
    )
    async with server.running(sharded):
        assert sharded.get_guild(server.guild_id) is not None

    assert server.connections[0].identify is not None and server.connections[0].identify["shard"] == [0, 1]


async def test_rest_responses_are_exactly_application_json_and_unknown_routes_are_flagged() -> None:
    async with FakeDiscord() as server, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {server.token}"}
        async with session.get(f"{server.base_url}/users/@me", headers=headers) as response:
            assert response.status == 200
            # discord.py treats any other Content-Type (even with "; charset=utf-8") as text.
            assert response.headers["Content-Type"] == "application/json"
        async with session.get(f"{server.base_url}/users/@me") as response:
            assert response.status == 401
        async with session.get(f"{server.base_url}/guilds/1/bans", headers=headers) as response:
            assert response.status == 404
            assert (await response.json())["message"] == "404: Not Found"

        assert server.unhandled == ["GET /api/v10/guilds/1/bans"]
        assert [r.status for r in server.rejections] == [401]


async def test_endpoints_are_restored_on_exit() -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    async with FakeDiscord() as server:
        assert server.base_url == discord.http.Route.BASE

    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
