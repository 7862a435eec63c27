"""What a Discord API can send the bot: refusals, rate limits, server errors, outages.

The real discord.py client runs the unmodified bot against the loopback server, which is told to
answer chosen routes with a chosen status (``FakeDiscord.fail``) or to drop its gateway. Each case
must end as at most a line or two of log and a bot that keeps answering: never a traceback, never
silence where a reply could still get through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import discord
import pytest

from bot.cli import main
from bot.client import NewsBot, run_bot
from bot.render import CONTENT_LIMIT
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.settings import Settings, load_settings
from tests.conftest import SEED
from tests.discord_server import FakeDiscord, Record

QUESTION = "Who opposed the ABM amendment?"
MESSAGES = r"/channels/\d+/messages"
CALLBACK = r"/interactions/\d+/[^/]+/callback"
FOLLOWUP = r"/webhooks/\d+/[^/]+"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Path:
    """One store with the sample article, shared by every bot here (they only read it)."""
    root = tmp_path_factory.mktemp("bot-faults") / "store"
    Engine(load_settings(env={}, store=root), encoder).ingest([SEED])
    return root


def make_bot(server: FakeDiscord, store: Path, encoder: Encoder) -> NewsBot:
    settings = load_settings(env={}, store=store, guild_id=server.guild_id, refresh_seconds=0.2)
    return NewsBot(Engine(settings, encoder), guild_ready_timeout=0.05)


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog
    # Whatever happened, nothing the bot or discord.py logged may carry a traceback.
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert records, "nothing was logged at all: is the capture working?"
    tracebacks = [r.getMessage() for r in records if r.exc_info is not None]
    assert not tracebacks, tracebacks


def warnings(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and all(w in r.getMessage() for w in words)
    ]


def answers(record: Record) -> bool:
    return "China and Russia" in record.text


async def ask_by_mention(server: FakeDiscord) -> Record:
    asked = await server.send_message(f"{server.bot_user.mention} {QUESTION}")
    return await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)


@pytest.mark.parametrize(
    ("status", "code", "message", "hint"),
    [
        (403, 50001, "Missing Access", "applications.commands"),  # real Discord, bot invited without it
        (400, 50035, "Invalid Form Body", "@mentions and answer channels still work"),
    ],
)
async def test_a_refused_command_sync_is_one_warning_and_mentions_still_work(
    server: FakeDiscord,
    store: Path,
    encoder: Encoder,
    logged: pytest.LogCaptureFixture,
    status: int,
    code: int,
    message: str,
    hint: str,
) -> None:
    server.fail("PUT", r"/applications/\d+(/guilds/\d+)?/commands", status, code=code, message=message)
    async with server.running(make_bot(server, store, encoder)):
        reply = await ask_by_mention(server)
    assert answers(reply) and reply.embeds
    assert len(warnings(logged, "slash commands", hint)) == 1, logged.text
    assert server.injected[0].status == status and server.problems == []


async def test_a_refused_embed_is_sent_again_as_plain_text(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    # An independent server that does not know some embed field refuses the whole message.
    server.fail("POST", MESSAGES, 400, message="Invalid Form Body: embeds.0.flags")
    async with server.running(make_bot(server, store, encoder)):
        reply = await ask_by_mention(server)
    assert reply.embeds == [] and answers(reply) and len(reply.text) <= CONTENT_LIMIT
    assert "[1] Russia, China to Discuss US Missile Plan" in reply.text
    assert reply.allowed_mentions is not None and reply.allowed_mentions.get("parse") == []
    assert len(warnings(logged, "refused the embed", "plain text")) == 1


async def test_a_send_refused_for_permissions_is_one_line_naming_them_and_the_bot_goes_on(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    fault = server.fail("POST", MESSAGES, 403, times=None)
    async with server.running(make_bot(server, store, encoder)):
        await server.send_message(f"{server.bot_user.mention} {QUESTION}")
        await server.wait_until(lambda: warnings(logged, "cannot send"), timeout=30, what="the warning")
        assert fault.hits == 1  # tried once: the plain-text retry is for refused embeds, not permissions
        server.clear_faults()
        reply = await ask_by_mention(server)  # still serving
    lines = warnings(logged, "cannot send")
    assert len(lines) == 1 and "403" in lines[0] and "Send Messages" in lines[0] and "Embed Links" in lines[0]
    assert answers(reply)


async def test_without_embed_links_the_answer_goes_as_plain_text_and_the_log_names_it(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    # The server's roles grant the bot everything but Embed Links; Discord refuses the embed with 403.
    for role_id in (server.everyone_role_id, server.bot_role_id):
        granted = discord.Permissions(int(server.roles[role_id]["permissions"]))
        granted.embed_links = False
        server.roles[role_id]["permissions"] = str(granted.value)
    server.fail("POST", MESSAGES, 403)
    async with server.running(make_bot(server, store, encoder)):
        reply = await ask_by_mention(server)
    assert reply.embeds == [] and answers(reply) and len(reply.text) <= CONTENT_LIMIT
    lines = warnings(logged, "cannot send")
    assert len(lines) == 1 and "needs Embed Links" in lines[0] and "Send Messages" not in lines[0]


async def test_a_refused_typing_indicator_does_not_stop_the_answer(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    server.fail("POST", r"/channels/\d+/typing", 403, times=None)
    async with server.running(make_bot(server, store, encoder)):
        reply = await ask_by_mention(server)
    assert answers(reply) and reply.embeds and server.injected


async def test_a_failed_defer_answers_the_asker_in_the_channel(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    # An interaction Discord no longer knows (or a server without deferred responses).
    server.fail("POST", CALLBACK, 404, times=None)
    async with server.running(make_bot(server, store, encoder)):
        await server.send_slash_command("ask", {"question": QUESTION})
        posted = await server.wait_for_message(lambda r: r.kind == "message", timeout=30)
    assert answers(posted) and server.user.mention in posted.text
    assert posted.allowed_mentions == {"parse": [], "users": [server.user.id]}
    assert len(warnings(logged, "could not acknowledge /ask")) == 1


async def test_a_failed_follow_up_answers_the_asker_in_the_channel(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    server.fail("POST", FOLLOWUP, 400, times=None)
    async with server.running(make_bot(server, store, encoder)):
        await server.send_slash_command("ask", {"question": QUESTION})
        posted = await server.wait_for_message(lambda r: r.kind == "message", timeout=30)
    assert answers(posted) and server.user.mention in posted.text and posted.embeds
    # The follow-up was tried with its embed, then as plain text; then the channel got it.
    assert [r.status for r in server.injected] == [400, 400]
    assert len(warnings(logged, "/ask follow-up")) == 2


@pytest.mark.parametrize("status", [429, 500])
async def test_a_rate_limit_or_a_server_error_is_retried_and_the_answer_arrives(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture, status: int
) -> None:
    server.fail("POST", MESSAGES, status, retry_after=0.3)
    async with server.running(make_bot(server, store, encoder)):
        reply = await ask_by_mention(server)
    assert answers(reply) and reply.embeds and server.injected[0].status == status


async def test_a_gateway_outage_is_one_line_per_reconnect_attempt(
    server: FakeDiscord, store: Path, encoder: Encoder, logged: pytest.LogCaptureFixture
) -> None:
    bot = make_bot(server, store, encoder)
    async with server.running(bot):
        before = len(logged.records)
        await server.drop_gateway(2.0)
        await server.wait_until(lambda: server.gateway_down is False, timeout=10)
        await server.wait_until(bot.is_ready, timeout=30, what="the bot back on the gateway")
        reply = await ask_by_mention(server)
    assert answers(reply)
    during = [r.getMessage() for r in logged.records[before:] if r.name.startswith("discord")]
    attempts = [m for m in during if "reconnect" in m.lower()]
    assert attempts, during
    # discord.py backs off (about 1 s, 2 s, 4 s): a 2 s outage is a few attempts, each one line.
    assert len(during) <= 3 * len(attempts) + 4, during


def serve_in_thread(target: object) -> int:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(target()))  # type: ignore[operator]
    thread.start()
    thread.join(120)
    assert result, "serve did not return"
    return result[0]


async def test_serve_when_discord_is_unreachable_retries_then_exits_2_with_one_line(
    store: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "some-token")
    # Nothing listens on port 9 of the loopback (discard): connections are refused, as with no network.
    monkeypatch.setattr(discord.http.Route, "BASE", "http://127.0.0.1:9/api/v10")
    settings = load_settings(env={}, store=store, connect_retry_seconds=2.5)
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, serve_in_thread, lambda: run_bot(settings))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Discord cannot be reached" in errors[0], err
    retries = [line for line in err.splitlines() if "cannot reach Discord" in line]
    assert len(retries) == 2, err  # after 1 s, then the 1.5 s left of 2.5 s
    assert "Unclosed" not in err  # each retry closes the HTTP session it opened


@pytest.mark.parametrize(
    ("status", "expected"), [(400, "Discord refused the login (400"), (503, "cannot be reached")]
)
async def test_serve_when_the_login_gets_an_error_other_than_401(
    server: FakeDiscord,
    store: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    expected: str,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", server.token)
    server.fail("GET", "/users/@me", status, times=None)
    settings = load_settings(env={}, store=store, connect_retry_seconds=1.5)
    code = await asyncio.get_running_loop().run_in_executor(None, serve_in_thread, lambda: run_bot(settings))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and expected in errors[0], err
    # A refusal is final (one try); an outage (5xx) is retried until connect_retry_seconds pass.
    assert (len(server.injected) == 1) == (status == 400)


async def test_serve_from_the_command_line_prints_each_log_line_once(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "some-token")
    monkeypatch.setenv("NEWSBOT_CONNECT_RETRY_SECONDS", "1.5")
    monkeypatch.setattr(discord.http.Route, "BASE", "http://127.0.0.1:9/api/v10")
    args = ["--store", str(store), "-v", "serve"]
    code = await asyncio.get_running_loop().run_in_executor(None, serve_in_thread, lambda: main(args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and [line for line in lines if line.startswith("error:")], err
    # The first retry is logged once, not once by the command line's handler and again by discord.py's.
    assert sum("retrying in 1.0 s" in line for line in lines) == 1, err


def test_settings_carry_the_retry_time(tmp_path: Path) -> None:
    assert load_settings(env={"NEWSBOT_CONNECT_RETRY_SECONDS": "7"}).connect_retry_seconds == 7.0
    assert Settings().connect_retry_seconds == 300.0
