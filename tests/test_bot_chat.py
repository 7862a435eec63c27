"""The bot in a conversation, through the real discord.py client against the loopback Discord: follow-up
questions, articles shared in the channel (from a loopback web server), scope per guild, and votes."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from bot import cli
from bot.client import NewsBot
from embeddings import feedback
from embeddings.encoder import Encoder
from embeddings.engine import Engine
from embeddings.settings import Settings
from embeddings.sharing import Sharer
from tests.discord_server import FakeDiscord, Record
from tests.web_pages import NOTES_TEXT, PageServer


def make_bot(server: FakeDiscord, settings: Settings, encoder: Encoder, **changes: object) -> NewsBot:
    settings = settings.replace(guild_id=server.guild_id, refresh_seconds=0.2, **changes)
    return NewsBot(Engine(settings, encoder), guild_ready_timeout=0.05)


def cited(record: Record) -> list[str]:
    return [f["name"] for e in record.embeds for f in e.get("fields", [])]


async def test_replies_to_an_answer_and_messages_in_its_thread_are_follow_ups(
    server: FakeDiscord, settings: Settings, encoder: Encoder, stories: Path
) -> None:
    bot = make_bot(server, settings, encoder, cooldown_questions=10)
    bot.engine.ingest([stories])
    async with server.running(bot):
        mention = bot.user.mention  # type: ignore[union-attr]
        asked = await server.send_message(f"{mention} When did the Dunmore mill open?")
        first = await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)
        # A reply to the answer needs no mention, and is read in the conversation's context.
        follow = await server.send_message("How many people did it once employ?", reply_to=first.message_id)
        second = await server.wait_for_message(lambda r: r.reply_to == follow, timeout=30)
        again = await server.send_message("Who owns it?", reply_to=second.message_id)
        third = await server.wait_for_message(lambda r: r.reply_to == again, timeout=30)
        # A reply to anyone else's message is no question.
        chatter = await server.send_message("nice", reply_to=follow)
        # /ask starts a conversation too: a reply to its answer follows it up.
        slash = await server.send_slash_command(
            "ask", {"question": "Who is the harbour master at Kestrel Bay?"}
        )
        answer = await server.wait_for_message(lambda r: r.interaction_id == slash.id, timeout=30)
        cost = await server.send_message("How much did the repairs cost?", reply_to=answer.message_id)
        costs = await server.wait_for_message(lambda r: r.reply_to == cost, timeout=30)
    assert "1921" in first.embeds[0]["description"]
    assert "thousand" in second.embeds[0]["description"]
    assert "Larchfield" in third.embeds[0]["description"]
    assert not any(r.reply_to == chatter for r in server.records)
    assert "240,000 krone" in costs.embeds[0]["description"]
    assert server.problems == []


async def test_a_thread_the_bot_answered_in_is_one_conversation(
    server: FakeDiscord, settings: Settings, encoder: Encoder, stories: Path
) -> None:
    bot = make_bot(server, settings, encoder, reply_in_thread=True)
    bot.engine.ingest([stories])
    async with server.running(bot):
        await server.send_message(f"{bot.user.mention} When did the Dunmore mill open?")  # type: ignore[union-attr]
        thread = await server.wait_for(lambda r: r.kind == "thread_create", timeout=30)
        await server.wait_for_message(lambda r: r.channel_id == thread.channel_id, timeout=30)
        after = len(server.records)
        assert thread.channel_id is not None
        thanks = await server.send_message("thanks!", channel_id=thread.channel_id)
        await server.send_message("Who owns it?", channel_id=thread.channel_id)
        answer = await server.wait_for_message(
            lambda r: r.channel_id == thread.channel_id, after=after, timeout=30
        )
    assert "Larchfield" in answer.embeds[0]["description"]
    assert not any(r.reply_to == thanks for r in server.records)
    assert len([r for r in server.records[after:] if r.is_message]) == 1
    assert server.problems == []


async def test_links_and_files_shared_in_an_article_channel_become_answerable(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    async with PageServer(slow_seconds=3.0) as pages:
        bot = make_bot(
            server,
            settings,
            encoder,
            article_channels=(server.channel_id,),
            allow_private_urls=True,  # the pages are on a loopback server
            fetch_timeout_seconds=1.0,
            share_user_limit=20,
        )
        async with server.running(bot):
            shared = await server.send_message(f"Worth a read: {pages.url('/article.html')}")
            ack = await server.wait_for_message(lambda r: r.reply_to == shared, timeout=30)
            reaction = await server.wait_for(lambda r: r.kind == "reaction_add" and r.message_id == shared)
            mention = bot.user.mention  # type: ignore[union-attr]
            asked = await server.send_message(f"{mention} Who is the Kestrel Bay harbour master?")
            answer = await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)
            # The same link again is known: not fetched a second time.
            repeat = await server.send_message(f"again {pages.url('/article.html')}")
            known = await server.wait_for_message(lambda r: r.reply_to == repeat, timeout=30)
            bad = await server.send_message(
                " ".join(pages.url(p) for p in ("/big.html", "/slow.html", "/report.pdf", "/missing"))
            )
            refused = await server.wait_for_message(lambda r: r.reply_to == bad, timeout=30)
            upload = await server.send_message("", attachments={"notes.txt": NOTES_TEXT.encode()})
            stored = await server.wait_for_message(lambda r: r.reply_to == upload, timeout=30)
            asked = await server.send_message(f"{mention} Who is the Vellholm librarian?")
            library = await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)
    assert ack.content == "Added: “Harbour ferry returns after storm repairs”"
    assert unquote(reaction.body["emoji"]) == "📰"
    assert "Ingrid Solberg" in answer.embeds[0]["description"]
    assert cited(answer)[0] == "[1] Harbour ferry returns after storm repairs"
    assert pages.url("/article.html") in json.dumps(answer.embeds)  # cited with its link
    assert known.content == "Already known: “Harbour ferry returns after storm repairs”"
    assert pages.hits["/article.html"] == 1
    lines = (refused.content or "").splitlines()
    assert "over the 5.0 MB limit" in lines[0] and "took longer than 1 s" in lines[1]
    assert "not a web page or text (application/pdf)" in lines[2] and "answered 404" in lines[3]
    assert not any(r.kind == "reaction_add" and r.message_id == bad for r in server.records)
    assert stored.content == "Added: “Library extends opening hours”"
    assert "Tomas Brekke" in library.embeds[0]["description"]
    assert all(agent.startswith("newsbot/") for agent in pages.user_agents)
    assert server.problems == []


async def test_private_addresses_are_refused_and_sharing_is_rate_limited(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    async with PageServer() as pages:
        # No article channels: a link counts when the bot is mentioned with it. Private addresses are
        # refused (the default); "localhost" is trusted by name, so its redirect to 127.0.0.1 is what
        # gets refused.
        bot = make_bot(
            server,
            settings,
            encoder,
            trusted_url_hosts=("localhost",),
            share_user_limit=3,
            share_guild_limit=4,
        )
        async with server.running(bot):
            mention = bot.user.mention  # type: ignore[union-attr]
            shared = await server.send_message(
                f"{mention} {pages.url('/article.html')} {pages.url('/to-loopback', host='localhost')} "
                f"{pages.url('/notes.txt', host='localhost')} {pages.url('/moved', host='localhost')}"
            )
            reply = await server.wait_for_message(lambda r: r.reply_to == shared, timeout=30)
            plain = await server.send_message(f"no mention here {pages.url('/notes.txt', host='localhost')}")
            # Another member: their own limit is fresh, the server's is nearly spent.
            other = await server.send_message(
                f"{mention} {pages.url('/notes.txt', host='localhost')} "
                f"{pages.url('/moved', host='localhost')}",
                author=server.admin,
            )
            second = await server.wait_for_message(lambda r: r.reply_to == other, timeout=30)
            asked = await server.send_message(f"{mention} Who is the Vellholm librarian?")
            answer = await server.wait_for_message(lambda r: r.reply_to == asked, timeout=30)
    lines = (reply.content or "").splitlines()
    assert "127.0.0.1 is not a public address (127.0.0.1 is a loopback address)" in lines[0]
    assert "127.0.0.1 is not a public address" in lines[1]  # the redirect's target
    assert lines[2] == "Added: “Library extends opening hours”"
    assert "you are sharing quickly" in lines[3]  # the fourth link in a minute, over share_user_limit
    assert (second.content or "").splitlines()[0] == "Already known: “Library extends opening hours”"
    assert "this server is sharing quickly" in (second.content or "").splitlines()[1]
    assert pages.hits["/article.html"] == 0 and pages.hits["/to-loopback"] == 1
    assert not any(r.reply_to == plain for r in server.records)
    assert "Tomas Brekke" in answer.embeds[0]["description"]
    assert server.problems == []


async def test_shared_articles_stay_in_their_guild_and_can_be_forgotten(
    server: FakeDiscord, settings: Settings, encoder: Encoder
) -> None:
    async with PageServer() as pages:
        bot = make_bot(server, settings, encoder, allow_private_urls=True)
        bot.engine.ensure_default_corpus()
        # Another guild shared the library notes; this one must never see them.
        other = await Sharer(bot.engine).share_link(server.guild_id + 1, pages.url("/notes.txt"))
        assert other.ok
        async with server.running(bot):
            added = await server.send_slash_command("add", {"url": pages.url("/article.html")})
            ack = await server.wait_for_message(lambda r: r.interaction_id == added.id, timeout=30)
            stats = await server.send_slash_command("stats")
            counts = await server.wait_for_message(lambda r: r.interaction_id == stats.id)
            asked = await server.send_slash_command("ask", {"question": "Who is the Vellholm librarian?"})
            library = await server.wait_for_message(lambda r: r.interaction_id == asked.id, timeout=30)
            asked = await server.send_slash_command(
                "ask", {"question": "Who is the Kestrel Bay harbour master?"}
            )
            ferry = await server.wait_for_message(lambda r: r.interaction_id == asked.id, timeout=30)
            denied = await server.send_slash_command("forget", {"url": pages.url("/article.html")})
            refusal = await server.wait_for_message(lambda r: r.interaction_id == denied.id)
            allowed = await server.send_slash_command(
                "forget", {"url": pages.url("/article.html")}, user=server.admin
            )
            removed = await server.wait_for_message(lambda r: r.interaction_id == allowed.id, timeout=30)
            asked = await server.send_slash_command(
                "ask", {"question": "Who is the Kestrel Bay harbour master?"}
            )
            gone = await server.wait_for_message(lambda r: r.interaction_id == asked.id, timeout=30)
        shared_elsewhere = bot.engine.searcher.stats()
    assert ack.content == "Added: “Harbour ferry returns after storm repairs”"
    assert "**2** articles" in (counts.content or "")  # the sample and this guild's page, not the notes
    assert shared_elsewhere["articles"] == 2  # after the forget: the sample and the other guild's notes
    assert not any("Library" in name for name in cited(library)) and "Tomas Brekke" not in library.text
    assert "Ingrid Solberg" in ferry.embeds[0]["description"]
    assert refusal.ephemeral and "Manage Messages" in (refusal.content or "")
    assert "Removed 1 article" in (removed.content or "")
    assert not any("Harbour ferry" in name for name in cited(gone))
    assert server.problems == []


async def test_votes_are_stored_once_per_person_and_exported_for_eval(
    server: FakeDiscord,
    settings: Settings,
    encoder: Encoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bot = make_bot(server, settings, encoder)
    async with server.running(bot):
        asked = await server.send_slash_command("ask", {"question": "Who opposed the ABM amendment?"})
        answer = await server.wait_for_message(lambda r: r.interaction_id == asked.id, timeout=30)
        assert answer.message_id is not None
        buttons = {b.get("emoji", {}).get("name"): b["custom_id"] for b in answer.components[0]["components"]}
        thanks = []
        for user, emoji in (
            (server.user, "👍"),
            (server.user, "👎"),
            (server.admin, "👍"),
            (server.owner, "👍"),
        ):
            click = await server.send_component_interaction(answer.message_id, buttons[emoji], user=user)
            thanks.append(await server.wait_for_message(lambda r, c=click: r.interaction_id == c.id))
    assert all(t.ephemeral and "Thanks" in (t.content or "") for t in thanks)
    # bob changed his mind: one vote each, bob's the latest.
    assert feedback.counts(settings.store) == feedback.Counts(up=2, down=1, answers=1)
    store = str(settings.store)
    exported = tmp_path / "feedback.jsonl"
    assert cli.main(["--store", store, "feedback", "--export", str(exported)]) == 0
    [line] = [json.loads(x) for x in exported.read_text().splitlines()]
    assert line["question"] == "Who opposed the ABM amendment?" and line["vote"] == "up"
    assert "China and Russia oppose" in line["answers"][0] and line["article_id"]
    assert len(line["passage_ids"]) == len(cited(answer)) and str(server.user.id) not in exported.read_text()
    capsys.readouterr()
    assert cli.main(["--store", store, "stats"]) == 0
    assert "2 👍, 1 👎 on 1 answers" in capsys.readouterr().out
    # The export is a question file eval reads.
    assert cli.main(["--store", store, "eval", str(exported)]) == 0
    assert "| rrf | 1 | 1.000 |" in capsys.readouterr().out
    assert server.problems == []
