"""Follow-up questions, on the engine and through `newsbot chat` and `newsbot eval`."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from bot import cli
from embeddings.conversation import Conversation, Conversations, names_in, refers_back, resolve
from embeddings.engine import Engine
from embeddings.settings import Settings


def test_names_and_references() -> None:
    assert names_in("Who is the Lloyd's of London boss?") == ["Lloyd", "London"]
    assert names_in("When was it signed?") == []
    assert names_in("Larchfield said what?") == []  # an opening capital alone names nothing
    assert refers_back("When was it signed?") and refers_back("And in 2004?")
    assert refers_back("Which of the club's goalkeepers is back?")
    assert not refers_back("Who won the choir championship in Cardiff?")


def test_a_follow_up_carries_the_topic_and_a_new_subject_does_not(engine: Engine, stories: Path) -> None:
    engine.ingest([stories])
    chat = Conversation()
    first = engine.ask("Who is the harbour master at Kestrel Bay?", conversation=chat)
    assert first.answered and "Ingrid Solberg" in first.text
    follow = engine.ask("How much did the repairs cost?", conversation=chat)
    assert follow.citations[0].article.title == "Harbour ferry returns after repairs"
    assert "240,000 krone" in follow.text
    # Names nothing new, points back with "she": the ferry story is preferred.
    resolved = chat.resolve("What did she say about a second vessel?")
    assert resolved.follow_up and "Kestrel" in resolved.query
    assert any("ferry" in a for a in resolved.prefer)
    # A new subject starts afresh: nothing of the ferry is carried into its search.
    fresh = chat.resolve("How many jobs will go at the Dunmore paper mill?")
    assert not fresh.follow_up and fresh.query == "How many jobs will go at the Dunmore paper mill?"
    answer = engine.ask("How many jobs will go at the Dunmore paper mill?", conversation=chat)
    assert "310 jobs" in answer.text
    owner = engine.ask("Who owns it?", conversation=chat)
    assert "Larchfield" in owner.text
    # Too thin to answer on its own words, it is answered on the resolved question's strength, and
    # made like any answer: the answer words are marked (bold in Discord).
    assert owner.words is not None and owner.text[slice(*owner.words)] == "Larchfield Group"
    assert len(chat.turns) == 4  # the last four turns are kept


def test_without_a_conversation_the_follow_up_is_lost(engine: Engine, stories: Path) -> None:
    engine.ingest([stories])
    chat = Conversation()
    engine.ask("When did the Dunmore mill open?", conversation=chat)
    alone = resolve("How many people did it once employ?", [])
    assert not alone.follow_up
    followed = engine.ask("How many people did it once employ?", conversation=chat)
    assert followed.citations[0].article.title == "Paper mill to close in Dunmore"
    assert "thousand" in followed.text


def test_conversations_expire_and_are_bounded() -> None:
    open_ = Conversations(ttl=0.05, limit=2)
    first = open_.start(("message", 1))
    open_.link(("message", 2), first)
    assert open_.get(("message", 2)) is first and len(open_) == 1
    open_.start(("thread", 3))
    open_.start(("thread", 4))  # over the limit: the least recently used key goes
    assert open_.get(("message", 1)) is None
    time.sleep(0.06)
    assert open_.get(("thread", 4)) is None and len(open_) == 0


def test_newsbot_chat_answers_line_by_line_in_context(
    settings: Settings, stories: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--store", str(settings.store), "ingest", "-q", str(stories)]) == 0
    capsys.readouterr()
    questions = (
        "Who is the conductor of the Ashby Parva choir?\n\nHow many singers does it have?\n"
        + "x" * 2000
        + "\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(questions))
    assert cli.main(["--store", str(settings.store), "chat", "--json"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["question"] for line in lines] == [
        "Who is the conductor of the Ashby Parva choir?",
        "How many singers does it have?",
    ]
    assert "Meera Thackeray" in lines[0]["answer"] and "28 singers" in lines[1]["answer"]
    assert set(lines[1]) == {
        "question",
        "answered",
        "answer",
        "message",
        "answer_score",
        "read_as",
        "answer_words",
        "citations",
    }
    assert "the limit is 1000" in err  # a bad line is reported and the chat goes on


def test_eval_reads_conversation_files(
    settings: Settings, stories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--store", str(settings.store), "ingest", "-q", str(stories)]) == 0
    conversations = tmp_path / "talk.jsonl"
    turns = [
        {"question": "When did the Dunmore mill open?", "answers": ["1921"], "article_id": ""},
        {
            "question": "How many jobs will go there?",
            "answers": ["310"],
            "article_id": "",
            "standalone": "How many jobs will go at the Dunmore paper mill?",
        },
    ]
    conversations.write_text(json.dumps({"turns": turns}) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["--store", str(settings.store), "eval", str(conversations)]) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()[2:]}
    assert float(rows["follow-ups, in their conversation"][4]) == 1.0  # R@5
    assert float(rows["follow-ups, standalone wording"][7]) == 1.0  # answer sentence
