"""The newsbot Discord bot, unmodified, through the real discord.py client against a loopback Discord."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from pathlib import Path

import pytest

from bot.client import NewsBot, run_bot
from bot.render import CONTENT_LIMIT, EMBED_TOTAL_LIMIT, FIELD_VALUE_LIMIT, answer_text, embed_length
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.records import Answer
from embeddings.settings import Settings
from tests.conftest import HEARTBEAT
from tests.discord_server import CallbackType, FakeDiscord, Record


def make_bot(server: FakeDiscord, settings: Settings, encoder: Encoder, **changes: object) -> NewsBot:
    settings = settings.replace(guild_id=server.guild_id, refresh_seconds=0.2, **changes)
    return NewsBot(Engine(settings, encoder), guild_ready_timeout=0.05)


async def ask_by_mention(server: FakeDiscord, settings: Settings, encoder: Encoder, question: str) -> Record:
    """The reply a fresh bot gives to ``question`` asked by mentioning it."""
    bot = make_bot(server, settings, encoder)
    async with server.running(bot):
        asked = await server.send_message(f"{server.bot_user.mention} {question}")
        return await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)


def no_pings(record: Record) -> bool:
    assert record.allowed_mentions == {"parse": []} or record.allowed_mentions == {
        "parse": [],
        "replied_user": False,
    }, record.allowed_mentions
    assert record.message is not None
    return (
        not record.message["mentions"]
        and not record.message["mention_everyone"]
        and not record.message["mention_roles"]
    )


def within_limits(record: Record) -> bool:
    if record.content is not None and len(record.content) > CONTENT_LIMIT:
        return False
    return all(
        embed_length(e) <= EMBED_TOTAL_LIMIT
        and all(len(f["value"]) <= FIELD_VALUE_LIMIT for f in e.get("fields", []))
        for e in record.embeds
    )


async def test_a_mention_gets_a_reply_citing_the_seed_paragraph(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    reply = await ask_by_mention(server, settings, encoder, "Who opposed the ABM amendment?")
    body = reply.text
    assert "China and Russia oppose any amendment" in reply.embeds[0]["description"]
    field = reply.embeds[0]["fields"][0]
    assert field["name"] == "[1] Russia, China to Discuss US Missile Plan"
    assert "Patrick Goodenough" in field["value"] and "July 7, 2008" in field["value"]
    assert "**China and Russia oppose any amendment" in field["value"]
    assert "Show passages" in str(reply.components)
    assert no_pings(reply) and "Who opposed" in body
    assert server.problems == []


async def test_the_words_that_answer_are_bold_in_the_quote(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    reply = await ask_by_mention(server, settings, encoder, "When was the ABM treaty signed?")
    description = reply.embeds[0]["description"]
    assert "between the US and the Soviet Union in **1972**. [1]" in description
    assert server.problems == []


def test_bold_answer_words_keep_the_text_around_them_as_it_was() -> None:
    text = "Profits rose 76% to $1.13bn, the *firm* said."
    assert answer_text(Answer("q", True, text, words=(13, 15))) == (
        "Profits rose **76**% to $1.13bn, the \\*firm\\* said."
    )
    assert answer_text(Answer("q", True, text, words=(13, 16))) == (
        "Profits rose **76%** to $1.13bn, the \\*firm\\* said."
    )


async def test_discord_markup_in_a_question_is_read_as_plain_text(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    reply = await ask_by_mention(
        server, settings, encoder, "**who** opposed the __ABM amendment__? <:thinking:1234567890>"
    )
    assert "China and Russia oppose any amendment" in reply.embeds[0]["description"]
    assert "who opposed the ABM amendment?" in reply.text and "thinking" not in reply.text
    assert server.problems == []


async def test_slash_ask_is_deferred_then_answered(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    bot = make_bot(server, settings, encoder)
    async with server.running(bot):
        assert {c["name"] for c in server.synced_commands[server.guild_id]} >= {"ask", "stats", "reindex"}
        # Misspelt: the reply says how it read the question.
        interaction = await server.send_slash_command("ask", {"question": "Who opposed the ABM amendmant?"})
        answer = await server.wait_for_message(lambda r: r.interaction_id == interaction.id, timeout=30)
        # The "Show passages" button shows the full passages to the asker only.
        clicked = await server.send_component_interaction(
            answer.message_id, answer.components[0]["components"][0]["custom_id"]
        )
        passages = await server.wait_for_message(lambda r: r.interaction_id == clicked.id)
    callbacks = [
        r for r in server.records if r.kind == "interaction_callback" and r.interaction_id == interaction.id
    ]
    assert callbacks[0].callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert interaction.acked_at is not None and interaction.acked_at - interaction.dispatched_at < 3.0
    assert callbacks[0].at < answer.at and answer.kind == "followup"
    assert "China and Russia" in answer.embeds[0]["description"] and no_pings(answer)
    note = "*Read \u201camendmant\u201d as \u201camendment\u201d.*\n"
    assert answer.embeds[0]["description"].startswith(note)
    assert passages.ephemeral and "Pushing ahead with NMD" in passages.embeds[0]["description"]
    assert server.problems == []


async def test_quoted_mentions_in_articles_ping_nobody(
    server: FakeDiscord, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    story = tmp_path / "prank.txt"
    story.write_text(
        "Club prank goes viral\n\nThe club's account posted @everyone and <@123456> and <@&999> to all fans "
        "on Sunday, along with **bold** claims and a link to https://example.org/prank "
        "about the new stadium.\n"
    )
    bot = make_bot(server, settings, encoder)
    bot.engine.ingest([story])
    async with server.running(bot):
        interaction = await server.send_slash_command(
            "ask", {"question": "What did the club account post to fans?"}
        )
        answer = await server.wait_for_message(lambda r: r.interaction_id == interaction.id, timeout=30)
    assert "everyone" in answer.text
    assert no_pings(answer)
    assert server.problems == []


async def test_reindex_is_for_managers_only(
    server: FakeDiscord, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "ferry.txt").write_text(
        "Ferry service resumes\n\n"
        "The Skye ferry service resumed on Monday after a two-week strike by crews.\n"
    )
    bot = make_bot(server, settings, encoder, article_dirs=(str(folder),))
    async with server.running(bot):
        refused = await server.send_slash_command("reindex", user=server.user)
        refusal = await server.wait_for_message(lambda r: r.interaction_id == refused.id)
        allowed = await server.send_slash_command("reindex", user=server.admin)
        report = await server.wait_for_message(lambda r: r.interaction_id == allowed.id, timeout=60)
        stats = await server.send_slash_command("stats")
        counts = await server.wait_for_message(lambda r: r.interaction_id == stats.id)
        asked = await server.send_slash_command(
            "ask", {"question": "How long did the Skye ferry strike last?"}
        )
        answer = await server.wait_for_message(lambda r: r.interaction_id == asked.id, timeout=30)
    assert refusal.ephemeral and "Manage Server" in (refusal.content or "")
    assert "Reindexed: 1 added" in (report.content or "")
    assert "**2** articles" in (counts.content or "")  # the sample and the reindexed story
    assert "**two-week** strike" in answer.embeds[0]["description"]
    assert server.problems == []


async def test_a_burst_of_questions_is_answered_while_heartbeats_keep_time(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    bot = make_bot(server, settings, encoder, cooldown_questions=5, cooldown_seconds=60.0)
    users = [server.add_member(f"reader{i}") for i in range(100)]
    questions = [
        "Who opposed the ABM amendment?",
        "Where will Putin go after Beijing?",
        "What will the joint statement warn of?",
        "Who is the Chinese president?",
        "When was the ABM treaty signed?",
    ]
    async with server.running(bot):
        start, began = len(server.heartbeats), time.monotonic()
        replies = []
        # Rounds of 50 questions until several heartbeats fell inside the burst (answers take a few
        # milliseconds, so one round can be over before the first one).
        while len(replies) < 500 and (not replies or time.monotonic() - began < HEARTBEAT * 4):
            asked = [
                await server.send_message(
                    f"{bot.user.mention} {questions[i % 5]}",  # type: ignore[union-attr]
                    author=users[(len(replies) + i) % 100],
                )
                for i in range(50)
            ]
            for m in asked:
                replies.append(await server.wait_for_message(lambda r, m=m: r.reply_to == m, timeout=120))
        beats = server.heartbeats[start:]
    assert len(replies) >= 50 and all(r.embeds for r in replies)
    assert all("China and Russia" in r.embeds[0]["description"] for r in replies[::5])
    # discord.py heartbeats every interval; a blocked event loop would delay them and their acks.
    assert len(beats) >= 2
    assert all(b.acked_at is not None for b in beats[:-1])
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(beats)]
    assert max(gaps) < HEARTBEAT * 2.5, gaps
    assert server.problems == []


async def test_long_passages_and_questions_still_make_valid_messages(
    server: FakeDiscord, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    sentence = "The harbour authority said the *new* pier_extension would open in spring. "
    (tmp_path / "long.txt").write_text("Harbour report\n\n" + "".join(sentence for _ in range(55)) + "\n")
    bot = make_bot(server, settings, encoder, max_question_chars=2000, chunk_tokens=250)
    bot.engine.ingest([tmp_path / "long.txt"])
    long_question = ("When will the harbour pier open? " * 70)[:1999]
    async with server.running(bot):
        one = await server.send_slash_command("ask", {"question": long_question})
        two = await server.send_message(f"{bot.user.mention} {long_question[:1970]}")  # type: ignore[union-attr]
        first = await server.wait_for_message(lambda r: r.interaction_id == one.id, timeout=30)
        second = await server.wait_for_message(lambda r: r.reply_to == two, timeout=30)
    for record in (first, second):
        assert within_limits(record) and record.embeds
    assert server.problems == [] and server.rejections == []


async def test_bad_questions_cooldowns_and_failures_get_short_replies(
    server: FakeDiscord, settings: Settings, encoder: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot(server, settings, encoder, cooldown_questions=2, cooldown_seconds=60.0)
    async with server.running(bot):
        empty = await server.send_message(f"{bot.user.mention}   ")  # type: ignore[union-attr]
        reply = await server.wait_for_message(lambda r: r.reply_to == empty)
        assert "question is empty" in (reply.content or "")
        long = await server.send_slash_command("ask", {"question": "why " * 300}, user=server.admin)
        reply = await server.wait_for_message(lambda r: r.interaction_id == long.id)
        assert "limit is 1000" in (reply.content or "")
        second = await server.send_message(f"{bot.user.mention} Who opposed the ABM amendment?")  # type: ignore[union-attr]
        reply = await server.wait_for_message(lambda r: r.reply_to == second, timeout=30)
        assert reply.embeds
        third = await server.send_message(f"{bot.user.mention} And who supported it?")  # type: ignore[union-attr]
        reply = await server.wait_for_message(lambda r: r.reply_to == third)
        assert "please wait" in (reply.content or "")
        # A broken snapshot makes answering fail: the asker gets an apology and the bot carries on.
        bot.engine.searcher.close()
        failing = await server.send_slash_command("ask", {"question": "Who opposed it?"}, user=server.owner)
        apology = await server.wait_for_message(lambda r: r.interaction_id == failing.id)
        assert "Sorry, something went wrong" in (apology.content or "")
        assert any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)
        bot.engine._searcher = None  # the next refresh opens a fresh snapshot
        again = await server.send_slash_command(
            "ask", {"question": "Who opposed the ABM amendment?"}, user=server.owner
        )
        reply = await server.wait_for_message(lambda r: r.interaction_id == again.id, timeout=30)
        assert "China and Russia" in reply.embeds[0]["description"]


async def test_serve_needs_a_token_and_never_logs_it(
    server: FakeDiscord,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert run_bot(settings) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err
    secret = "not-the-right-token-abc123"
    monkeypatch.setenv("DISCORD_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_bot(settings)))
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)
    err = capsys.readouterr().err
    assert result == [2]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Discord rejected the token" in errors[0]
    assert "Unclosed" not in err
    assert secret not in err and all(secret not in r.getMessage() for r in caplog.records)


async def test_answer_channels_and_thread_mode(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    bot = make_bot(server, settings, encoder, answer_channels=(server.channel_id,), reply_in_thread=True)
    async with server.running(bot):
        # No mention needed in an answer channel; the answer goes to a new thread named after the question.
        await server.send_message("Who opposed the ABM amendment?")
        thread = await server.wait_for(lambda r: r.kind == "thread_create", timeout=30)
        answer = await server.wait_for_message(lambda r: r.channel_id == thread.channel_id, timeout=30)
    assert thread.body["name"] == "Who opposed the ABM amendment?"
    assert "China and Russia" in answer.embeds[0]["description"] and no_pings(answer)
    assert server.problems == []
