"""Loaders by file type: what each one extracts, and how each kind of bad input becomes one Skip."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from embeddings.articles import (
    article_from_html,
    discover_files,
    load_paths,
    make_article,
    normalized_hash,
    source_path,
)
from embeddings.records import Article, Skip

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "samples" / "000_e587924004c95b23.txt"
NEWS_PAGE = Path(__file__).resolve().parent / "data" / "articles" / "news_page.html"
# shared/ is the repository's sibling; the BBC corpus is not in the repo (its licence forbids that).
BBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbc_news"

ABM = (
    "China and Russia oppose any amendment to the Anti-Ballistic Missile Treaty, signed between the US "
    "and the Soviet Union in 1972."
)


def load(*paths: str | Path, **kwargs: float) -> tuple[list[Article], list[Skip]]:
    loaded = list(load_paths(paths, **kwargs))
    return [a for a in loaded if isinstance(a, Article)], [s for s in loaded if isinstance(s, Skip)]


def load_one(path: Path) -> Article:
    found, skips = load(path)
    assert skips == [] and len(found) == 1, skips
    return found[0]


def only_skip(*paths: str | Path, **kwargs: float) -> Skip:
    found, skips = load(*paths, **kwargs)
    assert found == [] and len(skips) == 1, (found, skips)
    assert "\n" not in skips[0].reason
    return skips[0]


# --------------------------------------------------------------------------- plain text


def test_seed_article_title_byline_and_body() -> None:
    article = load_one(SEED)
    assert article.title == "Russia, China to Discuss US Missile Plan"
    assert article.author == "Patrick Goodenough"
    assert article.published == "July 7, 2008"
    assert article.text.startswith("London (")
    assert "By Patrick Goodenough" not in article.text
    # paragraphs stay separated by blank lines, so a cited offset lands on the paragraph's start
    start = article.text.index(ABM)
    assert article.text[start - 2 : start] == "\n\n"
    assert any(paragraph.startswith(ABM) for paragraph in article.text.split("\n\n"))
    # the sign-off block repeating the author's name is not article text
    assert article.text.endswith("France and Russia.")
    assert "Spencer Journalism Fellow" not in article.text
    assert article.id == article.source == str(SEED.resolve())
    assert article.url == "" and article.link == ""
    expected = hashlib.sha256(f"{article.title}\n{article.text}".encode()).hexdigest()
    assert article.content_hash == expected


def test_bbc_style_file_has_no_byline(tmp_path: Path) -> None:
    path = tmp_path / "001.txt"
    path.write_text(
        "Broadband take-up slows in rural areas\n\n"
        "By 2025, many homes will still be without fast internet, says a study.\n\n"
        "The report blames the cost of laying fibre to remote villages.\n",
        encoding="utf-8",
    )
    article = load_one(path)
    assert article.title == "Broadband take-up slows in rural areas"
    assert article.author == "" and article.published == ""
    assert article.text == (
        "By 2025, many homes will still be without fast internet, says a study.\n\n"
        "The report blames the cost of laying fibre to remote villages."
    )


@pytest.mark.parametrize(
    ("byline", "author", "published"),
    [
        ("By Jane Doe", "Jane Doe", ""),
        ("By Jane Doe, 18 March 2024", "Jane Doe", "18 March 2024"),
        ("By Jane Doe - Mon, 18 Mar 2024 10:00 GMT", "Jane Doe", "Mon, 18 Mar 2024"),
        ("By Jane Doe, Political Correspondent", "Jane Doe", ""),
        ("By AFP | 2024-01-01", "AFP", "2024-01-01"),
    ],
)
def test_byline_variants(tmp_path: Path, byline: str, author: str, published: str) -> None:
    path = tmp_path / "story.txt"
    path.write_text(f"Headline\n{byline}\n\nBody text here.\n", encoding="utf-8")
    article = load_one(path)
    assert (article.author, article.published, article.text) == (author, published, "Body text here.")


@pytest.mark.parametrize(
    "sentence",
    ["By revaluing its gold, the IMF could cancel debts.", "By Christmas Day, shoppers had spent billions"],
)
def test_sentences_starting_with_by_are_body_text(tmp_path: Path, sentence: str) -> None:
    path = tmp_path / "story.txt"
    path.write_text(f"Headline\n\n{sentence}\n", encoding="utf-8")
    article = load_one(path)
    assert article.author == "" and article.text == sentence


def test_line_endings_and_trailing_spaces_do_not_change_the_hash(tmp_path: Path) -> None:
    unix, windows = tmp_path / "a.txt", tmp_path / "b.txt"
    unix.write_bytes(b"Title\n\nFirst paragraph.\n\n\n\nSecond paragraph.\n")
    windows.write_bytes(b"Title  \r\n\r\nFirst paragraph.   \r\n\r\nSecond paragraph.\r\n\r\n")
    a, b = load_one(unix), load_one(windows)
    assert a.text == b.text == "First paragraph.\n\nSecond paragraph."
    assert a.content_hash == b.content_hash


def test_utf8_bom_and_utf16_text_load(tmp_path: Path) -> None:
    bom, utf16 = tmp_path / "bom.txt", tmp_path / "utf16.txt"
    bom.write_bytes("\ufeffCafé opens\n\nIt serves coffee.\n".encode())
    utf16.write_bytes("Café opens\n\nIt serves coffee.\n".encode("utf-16"))
    assert load_one(bom).title == load_one(utf16).title == "Café opens"


# --------------------------------------------------------------------------- Markdown


def test_markdown_heading_byline_and_markup(tmp_path: Path) -> None:
    path = tmp_path / "story.md"
    path.write_text(
        "# Council approves **new** library\n\n"
        "*By Sam Park | 2 May 2024*\n\n"
        "The council voted for the **new** library, reports [the Gazette](https://gazette.example/x).\n\n"
        "## Funding\n\n"
        "![photo](img.jpg)\n"
        "Money comes from the __county__ budget; see file_name_here.\n",
        encoding="utf-8",
    )
    article = load_one(path)
    assert article.title == "Council approves new library"
    assert (article.author, article.published) == ("Sam Park", "2 May 2024")
    assert article.text == (
        "The council voted for the new library, reports the Gazette.\n\n"
        "Funding\n\n"
        "Money comes from the county budget; see file_name_here."
    )


def test_markdown_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "story.markdown"
    path.write_text(
        '---\ntitle: "Bridge reopens"\nauthor: Lee Chan\ndate: 2024-05-02\n---\n\n'
        "# Bridge reopens\n\nCars are back.\n",
        encoding="utf-8",
    )
    article = load_one(path)
    assert (article.title, article.author, article.published) == ("Bridge reopens", "Lee Chan", "2024-05-02")
    assert article.text == "Cars are back."


# --------------------------------------------------------------------------- HTML


def test_html_page_main_text_without_boilerplate() -> None:
    article = load_one(NEWS_PAGE)
    assert article.title == "Harbour town votes to rebuild flooded sea wall"
    assert article.author == "Mara Lindqvist"
    assert article.published == "2024-03-18"
    assert article.url == "https://ledger.example.com/news/2024/03/18/sea-wall-vote"
    assert article.id == article.source == str(NEWS_PAGE.resolve())
    assert article.text.startswith("Councillors in the harbour town of Wexmouth")
    assert "nineteen votes to four" in article.text
    for junk in ("Subscribe", "Sport", "Advertisement", "Most read", "Copyright", "cookies", "Share this"):
        assert junk not in article.text, junk
    assert len(article.text.split("\n\n")) == 6  # one paragraph per <p>, the <h1> is not repeated


def test_article_from_html_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    html = NEWS_PAGE.read_text(encoding="utf-8")
    article = article_from_html(html, source="https://feed.example/rss", url="https://ledger.example.com/a")
    assert isinstance(article, Article)
    assert article.id == article.url == "https://ledger.example.com/a"
    assert article.source == "https://feed.example/rss"
    assert article.link == "https://ledger.example.com/a"


def test_html_in_a_declared_legacy_charset(tmp_path: Path) -> None:
    paragraphs = "".join(
        f"<p>Paragraph {i}: the café raised its prices again this week.</p>" for i in range(4)
    )
    head = '<head><meta charset="windows-1252"><title>Café prices</title></head>'
    page = f"<html>{head}<body>{paragraphs}</body></html>"
    path = tmp_path / "page.htm"
    path.write_bytes(page.encode("cp1252"))
    article = load_one(path)
    assert article.title == "Café prices" and "the café raised" in article.text


def test_html_without_text_is_a_skip(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text("<html><head><title>Nothing here</title></head><body><script>x()</script></body></html>")
    assert only_skip(path).reason == "no article text found"


def test_html_falls_back_to_visible_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *args, **kwargs: None)
    page = "<html><body><nav>x</nav><div>A lone line of text.</div><script>x()</script></body></html>"
    article = article_from_html(page, source="page")
    assert isinstance(article, Article) and "A lone line of text." in article.text
    assert "x()" not in article.text


# --------------------------------------------------------------------------- JSON and JSON Lines


def test_json_list_with_field_aliases_and_coercion(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    records = [
        {"id": 7, "title": "First", "text": "One.", "author": ["Ann", "Bo"], "date": "2024-01-02"},
        {"title": "Second", "body": ["Para one.", "Para two."], "byline": "Cy", "published": 2024,
         "link": "https://news.example/2"},
        {"title": "No text here", "author": "Dee"},
    ]  # fmt: skip
    path.write_text(json.dumps(records), encoding="utf-8")
    found, skips = load(path)
    assert [a.title for a in found] == ["First", "Second"]
    first, second = found
    assert (first.id, first.author, first.published) == ("7", "Ann, Bo", "2024-01-02")
    assert first.source == f"{path}#0"
    assert second.id == second.source == f"{path}#1"
    assert (second.text, second.author, second.published) == ("Para one.\n\nPara two.", "Cy", "2024")
    assert second.url == second.link == "https://news.example/2"
    assert len(skips) == 1 and skips[0].source == f"{path}#2"
    assert "record 2" in skips[0].reason and "no text" in skips[0].reason


def test_json_single_object_is_one_article(tmp_path: Path) -> None:
    path = tmp_path / "story.json"
    path.write_text(json.dumps({"title": "Solo", "content": "Only story."}), encoding="utf-8")
    article = load_one(path)
    assert article.id == article.source == str(path) and article.text == "Only story."


def test_jsonl_malformed_line_is_skipped_and_the_rest_load(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text(
        json.dumps({"id": "a", "title": "A", "text": "Alpha."})
        + "\n\n"
        + '{"id": "b", "title": "B", "text": "Beta.}\n'
        + json.dumps({"id": "c", "title": "C", "text": "Gamma.", "url": "https://x.example/c"})
        + "\n",
        encoding="utf-8",
    )
    found, skips = load(path)
    assert [a.id for a in found] == ["a", "c"]
    assert found[1].source == f"{path}#4" and found[1].url == "https://x.example/c"
    assert len(skips) == 1
    assert skips[0].source == f"{path}#3"
    assert skips[0].reason.startswith("line 3: invalid JSON (Unterminated string")


def test_duplicate_record_ids_are_skipped(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(json.dumps({"id": "same", "title": name, "text": "Body."}) + "\n")
    found, skips = load(tmp_path)
    assert [a.title for a in found] == ["a.jsonl"]
    assert len(skips) == 1 and "duplicate id 'same'" in skips[0].reason


# --------------------------------------------------------------------------- bad input: one Skip each


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def folder_without_articles(root: Path) -> Path:
    (root / "sub").mkdir()
    write(root / "sub" / "notes.docx", b"not an article type")
    write(root / "sub" / ".hidden.txt", b"Hidden\n\nhidden files are not loaded.\n")
    return root / "sub"


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.txt", "no such file"),
    "empty folder": (folder_without_articles, "no loadable files"),
    "empty file": (lambda d: write(d / "e.txt", b""), "empty file"),
    "whitespace file": (lambda d: write(d / "w.md", b" \n\t\n  "), "empty file"),
    "binary": (lambda d: write(d / "b.txt", b"Title\n\nabc\x00def"), "binary file (NUL byte at offset 10)"),
    "bad utf-8": (lambda d: write(d / "u.txt", b"T\n\ncaf\xe9 ok"), "not valid UTF-8 (bad byte at offset 6"),
    "unknown suffix": (lambda d: write(d / "report.pdf", b"%PDF-1.4"), "unsupported file type '.pdf'"),
    "title only": (lambda d: write(d / "t.txt", b"Just a headline\n"), "no article text after the title"),
    "invalid json": (lambda d: write(d / "j.json", b'{"title": "x",'), "invalid JSON"),
    "json scalar": (lambda d: write(d / "s.json", b'"text"'), "expected a JSON object or a list of objects"),
    "json empty list": (lambda d: write(d / "l.json", b"[]"), "empty JSON list"),
    "jsonl record without text": (lambda d: write(d / "r.jsonl", b'{"title": "x"}\n'), "line 1: no text"),
    "jsonl non-object": (lambda d: write(d / "n.jsonl", b"[1, 2]\n"), "line 1: expected a JSON object"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_exactly_one_skip(tmp_path: Path, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    skip = only_skip(make(tmp_path))
    assert expected in skip.reason


def test_unreadable_file_is_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.txt", b"Title\n\nBody.\n")
    real_open = Path.open

    def locked_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    # Patched rather than chmod: tests may run as root, which can read a mode-000 file.
    monkeypatch.setattr(Path, "open", locked_open)
    assert only_skip(path).reason == "permission denied"


def test_huge_file_is_skipped_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: no 50 MB actually written
    medium = write(tmp_path / "medium.txt", b"T\n\n" + b"x" * 600_000)
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("an oversized file was opened"))
    started = time.perf_counter()
    skip = only_skip(path)
    assert time.perf_counter() - started < 1.0
    assert skip.reason == "file is 50.0 MB, over the 20.0 MB limit (max_file_mb)"
    assert only_skip(medium, max_file_mb=0.5).reason == "file is 0.6 MB, over the 0.5 MB limit (max_file_mb)"


def test_bad_files_do_not_stop_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "1_bad.txt", b"\xff\xfe\xfd not text \x00")
    write(tmp_path / "2_good.txt", b"Good\n\nStill loaded.\n")
    found, skips = load(tmp_path, tmp_path / "missing.md")
    assert [a.title for a in found] == ["Good"] and len(skips) == 2


# --------------------------------------------------------------------------- folders, ids, hashes


def test_folders_are_walked_sorted_skipping_hidden_and_unknown_files(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", b"B\n\nb.\n")
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "z.md", b"# AZ\n\naz.\n")
    write(tmp_path / "a" / "notes.docx", b"ignored")
    write(tmp_path / ".hidden.txt", b"H\n\nh.\n")
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".git" / "c.txt", b"C\n\nc.\n")
    write(tmp_path / "C.TXT", b"Upper\n\nsuffix case does not matter.\n")
    files, skips = discover_files([tmp_path, tmp_path / "b.txt"])  # b.txt twice: loaded once
    assert skips == []
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["C.TXT", "a/z.md", "b.txt"]
    found, skips = load(tmp_path, tmp_path / "b.txt")
    assert [a.title for a in found] == ["Upper", "AZ", "B"] and skips == []


def test_ids_are_stable_across_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "one.txt", b"One\n\nFirst.\n")
    write(tmp_path / "feed.jsonl", b'{"title": "Two", "text": "Second."}\n')
    first, _ = load(tmp_path)
    monkeypatch.chdir(tmp_path)
    second, _ = load("feed.jsonl", "one.txt")  # relative paths resolve to the same ids
    key = sorted((a.id, a.content_hash) for a in first)
    assert key == sorted((a.id, a.content_hash) for a in second)
    assert {a.id for a in first} == {
        str(tmp_path.resolve() / "one.txt"),
        f"{tmp_path.resolve() / 'feed.jsonl'}#1",
    }


def test_normalized_hash_ignores_case_and_whitespace() -> None:
    a = "Putin  began his visit.\n\nChina and Russia oppose it. "
    b = "putin began his VISIT. china and\trussia oppose it."
    assert normalized_hash(a) == normalized_hash(b)
    assert normalized_hash(a) != normalized_hash("Putin began his visit.")
    assert (
        make_article(id="1", title="T", text=a).content_hash
        != make_article(id="1", title="T", text=b).content_hash
    )


def test_make_article_normalises_before_hashing() -> None:
    article = make_article(
        id="x", title="  A\n title ", text="Line one  \r\nline two\r\n\r\n\r\nNext.\n", author=" Ann "
    )
    assert (article.title, article.author) == ("A title", "Ann")
    assert article.text == "Line one\nline two\n\nNext."
    assert article.content_hash == hashlib.sha256(b"A title\nLine one\nline two\n\nNext.").hexdigest()


def test_source_path_strips_record_suffix() -> None:
    assert source_path("/data/feed.jsonl#12") == Path("/data/feed.jsonl")
    assert source_path("/data/a#b.txt") == Path("/data/a#b.txt")
    assert source_path("https://news.example/story#1") is None


def test_a_single_path_string_is_one_path(tmp_path: Path) -> None:
    write(tmp_path / "one.txt", b"One\n\nFirst.\n")
    loaded = list(load_paths(str(tmp_path)))  # type-checks (a str is an Iterable[str]), so guard it
    assert [a.title for a in loaded if isinstance(a, Article)] == ["One"]


def test_text_without_a_title_line_keeps_its_first_paragraph(tmp_path: Path) -> None:
    paragraph = "A long opening paragraph with no headline above it. " * 8
    article = load_one(write(tmp_path / "untitled.txt", f"{paragraph}\n\nSecond.\n".encode()))
    assert article.title == "" and article.text == f"{paragraph.strip()}\n\nSecond."


# --------------------------------------------------------------------------- the BBC corpus (in shared/)


@pytest.mark.skipif(not BBC.is_dir(), reason="shared/data/bbc_news is not present next to the repository")
def test_bbc_corpus_loads_cleanly() -> None:
    started = time.perf_counter()
    from_files, skips = load(BBC / "articles")
    elapsed = time.perf_counter() - started
    assert skips == []
    assert len(from_files) == 2225
    assert elapsed < 30, elapsed
    for article in from_files:
        assert 0 < len(article.title) <= 120 and "\n" not in article.title
        assert article.text and not article.text.startswith(article.title)
        assert article.author == ""  # BBC bodies often start "By 2025, ..." and have no bylines
    first = next(a for a in from_files if a.id.endswith("business/001.txt"))
    assert first.title == "Ad sales boost Time Warner profit"

    from_jsonl, skips = load(BBC / "bbc_news.jsonl")
    assert skips == [] and len(from_jsonl) == 2225
    assert from_jsonl[0].id == "bbc-business-001" and from_jsonl[0].title == first.title
    assert all(a.id.startswith("bbc-") for a in from_jsonl)
    # the same story from the .txt file and the JSON record hashes the same
    assert {a.content_hash for a in from_files} == {a.content_hash for a in from_jsonl}
    assert first.content_hash == from_jsonl[0].content_hash
