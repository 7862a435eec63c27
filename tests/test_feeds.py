"""RSS and Atom feeds from a real HTTP server on 127.0.0.1: full-content feeds, teaser feeds whose pages
are fetched and extracted as on ingest, conditional requests, and broken feeds as one-line skips."""

from __future__ import annotations

import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.watch import Watcher
from embeddings.articles import article_from_html
from embeddings.engine import Engine
from embeddings.feeds import MIN_ARTICLE_CHARS, fetch_page, poll_feed
from embeddings.records import Skip

TRAM_PAGE = """<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>Riverton approves tram line | The Riverton Courier</title>
<meta name="author" content="Priya Natarajan">
<meta property="article:published_time" content="2025-02-03T08:00:00Z">
</head><body>
<header><nav><a href="/">Home</a> | <a href="/news">News</a> | <a href="/sport">Sport</a> |
<a href="/weather">Weather</a> | <a href="/subscribe">Subscribe for 1 pound a week</a></nav></header>
<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies?</div>
<main><article>
<h1>Riverton approves tram line</h1>
<p class="byline">By Priya Natarajan, 3 February 2025</p>
<p>The Riverton city council approved the new east-west tram line on Tuesday evening after a
four-hour debate.</p>
<p>The line will cost 84 million pounds and is due to open in the spring of 2027, the council said.</p>
<p>Councillor Mark Webb said the trams would carry twelve thousand passengers a day between the
station and the hospital.</p>
</article>
<aside><h2>Related stories</h2><ul><li><a href="/a">Bus fares frozen again</a></li>
<li><a href="/b">Bridge closed for repairs</a></li></ul></aside></main>
<footer><p>Copyright 2025 The Riverton Courier. All rights reserved.</p>
<p><a href="/privacy">Privacy policy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact us</a></p>
</footer></body></html>
"""

LIBRARY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Library extends hours</title></head><body>
<nav><ul><li><a href="/">Front page</a></li><li><a href="/local">Local</a></li>
<li><a href="/login">Log in</a></li></ul></nav>
<article>
<h1>Library extends hours</h1>
<p>Glenrock library will stay open until nine in the evening from March, the library trust said on
Friday.</p>
<p>The longer hours are paid for by a grant of 60 thousand pounds from the county arts fund.</p>
</article>
<div class="newsletter">Sign up to our newsletter for the top stories every morning.</div>
<footer>Glenrock Gazette, 1 High Street. Follow us on social media.</footer>
</body></html>
"""


def long_text(*sentences: str) -> str:
    text = " ".join(sentences)
    assert len(text) >= MIN_ARTICLE_CHARS, len(text)
    return text


FERRY_TEXT = long_text(
    "The Skye ferry service resumed on Monday after a two-week strike by crews over pay.",
    "The operator said the first sailing left Mallaig at seven in the morning with forty cars aboard.",
    "Union officials said members had accepted an offer of a six percent rise over two years.",
    "Islanders said the strike had left shops short of fresh food and fuel for most of the fortnight.",
    "Timetables return to normal on Wednesday, the operator said.",
)
BRIDGE_TEXT = long_text(
    "The old stone bridge at Ashford will close for repairs from the first of April.",
    "Engineers found cracks in two of its five arches during an inspection in January.",
    "The county council said the work would cost two million pounds and take about eight months.",
    "Drivers will be sent on a diversion through Brackley, adding around ten minutes to journeys.",
    "Cyclists and walkers can still cross on a temporary footbridge.",
)
ORCHARD_TEXT = long_text(
    "A community orchard with one hundred and twenty apple trees opened in Cedarville on Saturday.",
    "Volunteers planted the trees over three winters on land donated by a local farmer.",
    "The orchard will host a cider festival every October, the organisers said.",
    "Children from four primary schools helped choose the twelve varieties of apple grown there.",
    "The orchard is open to visitors every day from dawn until dusk.",
)
MARKET_TEXT = long_text(
    "The Dunmore Saturday market will move to the harbour car park from next month.",
    "Traders voted to leave the town square after complaints about parking and deliveries.",
    "The harbour site has room for sixty stalls, twice as many as the square.",
    "The first market at the new site will be held on the seventh of June.",
    "The town council said it would add extra bins, more lighting and a public toilet by the slipway.",
)


def rss(items: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>Highland News</title><link>http://127.0.0.1/</link><description>News</description>"
        + "".join(items)
        + "</channel></rss>"
    )


def rss_item(guid: str, title: str, link: str, body: str = "", summary: str = "", **extra: str) -> str:
    parts = [f"<item><title>{title}</title><link>{link}</link><guid isPermaLink='false'>{guid}</guid>"]
    parts += [f"<{tag}>{value}</{tag}>" for tag, value in extra.items()]
    if summary:
        parts.append(f"<description>{summary}</description>")
    if body:
        paragraphs = "".join(f"<p>{p}</p>" for p in re.split(r"(?<=\.) ", body))
        parts.append(f"<content:encoded><![CDATA[{paragraphs}]]></content:encoded>")
    return "".join(parts) + "</item>"


def atom_entry(entry_id: str, title: str, link: str, author: str, published: str, body: str) -> str:
    return (
        f"<entry><title>{title}</title><id>{entry_id}</id><link rel='alternate' href='{link}'/>"
        f"<author><name>{author}</name></author><published>{published}</published>"
        f"<updated>{published}</updated><summary>{body[:80]}</summary>"
        f"<content type='html'>&lt;p&gt;{body}&lt;/p&gt;</content></entry>"
    )


@dataclass
class Resource:
    body: bytes
    content_type: str
    etag: bool = True
    last_modified: bool = True
    modified_at: float = field(default_factory=lambda: time.time() - 3600)

    @property
    def tag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class Hit:
    path: str
    status: int
    headers: dict[str, str]


class FeedServer:
    """Serves feeds and pages from 127.0.0.1, answering conditional requests with 304 as a CDN would."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def put(self, path: str, body: str, content_type: str, **options: Any) -> None:
        with self.lock:
            self.resources[path] = Resource(body.encode(), content_type, **options)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        with self.lock:
            resource = self.resources.get(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status = 200 if resource else 404
        if resource is not None:
            if resource.etag and headers.get("if-none-match") == resource.tag:
                status = 304
            elif resource.last_modified and "if-modified-since" in headers and "if-none-match" not in headers:
                since = email.utils.parsedate_to_datetime(headers["if-modified-since"]).timestamp()
                if int(resource.modified_at) <= since:
                    status = 304
        with self.lock:
            self.hits.append(Hit(request.path, status, headers))
        request.send_response(status)
        if resource is not None:
            if resource.etag:
                request.send_header("ETag", resource.tag)
            if resource.last_modified:
                request.send_header(
                    "Last-Modified", email.utils.formatdate(resource.modified_at, usegmt=True)
                )
        body = b"" if status == 304 else (resource.body if resource else b"<h1>Not found</h1>")
        if status != 304:
            request.send_header("Content-Type", resource.content_type if resource else "text/html")
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def take_hits(self) -> list[Hit]:
        with self.lock:
            hits, self.hits = self.hits, []
        return hits


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def publish(server: FeedServer) -> dict[str, str]:
    """A full-content RSS feed, an Atom feed (one story shared with the RSS one), a teaser feed + pages."""
    rss_items = [
        rss_item(
            "rss-ferry",
            "Skye ferry back after strike",
            server.url("/news/ferry"),
            body=FERRY_TEXT,
            summary="Ferries sail again.",
            author="jane@example.com (Jane Doe)",
            pubDate="Mon, 06 Jan 2025 09:30:00 GMT",
        ),
        rss_item(
            "rss-bridge",
            "Ashford bridge to close",
            server.url("/news/bridge"),
            body=BRIDGE_TEXT,
            **{"dc:creator": "Tom Baker", "pubDate": "Tue, 07 Jan 2025 10:00:00 +0000"},
        ),
    ]
    server.put("/rss.xml", rss(rss_items), "application/rss+xml", last_modified=False)
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>County Wire</title><id>urn:county</id><updated>2025-01-08T08:00:00Z</updated>"
        + atom_entry(
            "urn:county:orchard",
            "Orchard opens in Cedarville",
            server.url("/wire/orchard"),
            "Carol King",
            "2025-01-08T08:00:00Z",
            ORCHARD_TEXT,
        )
        # The same bridge story as the RSS feed's, spaced and cased differently: stored once.
        + atom_entry(
            "urn:county:bridge",
            "Bridge closure",
            server.url("/wire/bridge"),
            "County Wire",
            "2025-01-07T11:00:00Z",
            BRIDGE_TEXT.upper().replace(" ", "  "),
        )
        + "</feed>"
    )
    server.put("/atom.xml", atom, "application/atom+xml", etag=False)
    teasers = [
        rss_item(
            "tram-2025",
            "Riverton approves tram line",
            server.url("/articles/tram.html"),
            summary="Council backs the new tram line. Read more on our website.",
            pubDate="Mon, 03 Feb 2025 08:00:00 GMT",
        ),
        rss_item(
            "library-2025",
            "Library extends hours",
            server.url("/articles/library.html"),
            summary="&lt;p&gt;Longer opening hours at Glenrock library.&lt;/p&gt;",
            author="news@gazette.example (Glenrock Gazette)",
        ),
    ]
    server.put("/teasers.xml", rss(teasers), "application/rss+xml; charset=utf-8")
    server.put("/articles/tram.html", TRAM_PAGE, "text/html; charset=utf-8")
    server.put("/articles/library.html", LIBRARY_PAGE, "text/html")
    return {name: server.url(f"/{name}.xml") for name in ("rss", "atom", "teasers")}


def article_rows(engine: Engine) -> dict[str, dict[str, str]]:
    store = engine.open_store()
    try:
        rows = store.db.execute("SELECT id, title, author, published, url, text FROM articles").fetchall()
    finally:
        store.close()
    return {r[0]: dict(title=r[1], author=r[2], published=r[3], url=r[4], text=r[5]) for r in rows}


def test_feeds_are_stored_with_their_details_and_teasers_get_their_pages(
    engine: Engine, feeds: FeedServer
) -> None:
    urls = publish(feeds)
    watcher = Watcher(engine, [], list(urls.values()))
    report = watcher.poll_feeds()
    assert report is not None and not report.skipped
    assert (report.added, report.duplicates) == (5, 1)
    hits = feeds.take_hits()
    assert sorted(h.path for h in hits) == [
        "/articles/library.html",
        "/articles/tram.html",
        "/atom.xml",
        "/rss.xml",
        "/teasers.xml",
    ]
    rows = article_rows(engine)
    assert set(rows) == {"rss-ferry", "rss-bridge", "urn:county:orchard", "tram-2025", "library-2025"}
    ferry = rows["rss-ferry"]
    assert ferry["title"] == "Skye ferry back after strike" and ferry["author"] == "Jane Doe"
    assert ferry["published"] == "2025-01-06" and ferry["url"] == feeds.url("/news/ferry")
    assert "forty cars aboard" in ferry["text"] and "Ferries sail again" not in ferry["text"]
    assert (rows["rss-bridge"]["author"], rows["rss-bridge"]["published"]) == ("Tom Baker", "2025-01-07")
    orchard = rows["urn:county:orchard"]
    assert (orchard["author"], orchard["published"]) == ("Carol King", "2025-01-08")
    assert orchard["url"] == feeds.url("/wire/orchard") and "cider festival" in orchard["text"]

    # Teasers: the page's main text, extracted as an HTML file is on ingest; no menus, banners, footers.
    tram = rows["tram-2025"]
    assert tram["text"] == article_from_html(TRAM_PAGE, tram["url"], tram["url"]).text
    assert "84 million pounds" in tram["text"] and "twelve thousand passengers" in tram["text"]
    for junk in ("Subscribe", "cookies", "Related stories", "Copyright", "Privacy", "Read more"):
        assert junk not in tram["text"], junk
    assert (tram["title"], tram["author"], tram["published"]) == (
        "Riverton approves tram line",
        "Priya Natarajan",  # from the page: the feed gives none
        "2025-02-03",
    )
    library = rows["library-2025"]
    assert "60 thousand pounds" in library["text"] and library["author"] == "Glenrock Gazette"
    for junk in ("Log in", "newsletter", "social media"):
        assert junk not in library["text"], junk

    # The bridge story came from both feeds: one article, two sources.
    store = engine.open_store()
    bridge_sources = store.db.execute("SELECT item FROM sources WHERE article_id = 'rss-bridge'").fetchall()
    store.close()
    assert sorted(bridge_sources) == [("rss-bridge",), ("urn:county:bridge",)]

    # Questions are answered from the page's text, which the teaser never had, and cite the page.
    answer = engine.ask("How much will the Riverton tram line cost?")
    first = answer.citations[0]
    assert first.article.link == feeds.url("/articles/tram.html") and "84 million" in first.passage

    # Nothing changed: one conditional request per feed, each answered 304; nothing is embedded.
    generation = engine.searcher.generation
    again = watcher.poll_feeds()
    assert again is not None and (again.touched, again.passages, again.skipped) == (0, 0, [])
    hits = feeds.take_hits()
    assert sorted((h.path, h.status) for h in hits) == [
        ("/atom.xml", 304),
        ("/rss.xml", 304),
        ("/teasers.xml", 304),
    ]
    by_path = {h.path: h.headers for h in hits}
    assert "if-none-match" in by_path["/rss.xml"] and "if-modified-since" in by_path["/atom.xml"]
    assert engine.refresh() is False and engine.searcher.generation == generation


def test_the_validators_survive_a_restart_and_a_changed_feed_embeds_only_what_is_new(
    engine: Engine, feeds: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = publish(feeds)
    store = str(engine.store_path)
    args = ["--store", store, "watch", "--once"] + [a for url in urls.values() for a in ("--feed", url)]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("5 added, 0 changed, 0 unchanged, 1 duplicates")
    feeds.take_hits()
    # A new run (a new process would be the same): the validators were kept in the store.
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("0 added, 0 changed, 0 unchanged, 0 duplicates")
    assert sorted(h.status for h in feeds.take_hits()) == [304, 304, 304]
    # The RSS feed gains an entry: its known entries are unchanged by hash, only the new one is embedded.
    body = feeds.resources["/rss.xml"].body.decode()
    item = rss_item("rss-market", "Market moves", feeds.url("/news/market"), body=MARKET_TEXT)
    feeds.put("/rss.xml", body.replace("</channel>", item + "</channel>"), "application/rss+xml")
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("1 added, 0 changed, 2 unchanged, 0 duplicates")
    assert sorted((h.path, h.status) for h in feeds.take_hits()) == [
        ("/atom.xml", 304),
        ("/rss.xml", 200),
        ("/teasers.xml", 304),
    ]


def test_broken_feeds_are_one_line_skips_and_the_rest_still_arrive(
    engine: Engine, feeds: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feeds.put("/page.html", LIBRARY_PAGE, "text/html")
    feeds.put("/garbage.xml", "<<< this is not <xml at all", "application/xml")
    feeds.put("/empty.xml", "", "application/rss+xml")
    dead_link = rss_item(
        "dead-1",
        "Orchard opens",
        feeds.url("/gone.html"),
        summary="A community orchard with apple trees opened in Cedarville on Saturday.",
    )
    feeds.put("/dead.xml", rss([dead_link]), "application/rss+xml")
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    refused = f"http://127.0.0.1:{closed.server_address[1]}/feed.xml"
    closed.server_close()  # nothing listens there now
    urls = [feeds.url(p) for p in ("/missing.xml", "/page.html", "/garbage.xml", "/empty.xml")]
    watcher = Watcher(engine, [], [*urls, refused, feeds.url("/dead.xml")])
    report = watcher.poll_feeds()
    assert report is not None
    reasons = {skip.source: skip.reason for skip in report.skipped}
    assert reasons[urls[0]] == "feed could not be fetched: HTTP 404 Not Found"
    assert reasons[urls[1]] == "not an RSS or Atom feed (the server sent text/html)"
    assert reasons[urls[2]] == "not an RSS or Atom feed (<unknown>:2:1: not well-formed (invalid token))"
    assert reasons[urls[3]] == "not an RSS or Atom feed (empty response)"
    assert reasons[refused].startswith("feed could not be fetched: ") and "refused" in reasons[refused]
    assert len(reasons) == 5 and all("\n" not in r for r in reasons.values())
    # The teaser whose page is gone is kept with the text the feed gave.
    assert report.added == 1 and "apple trees" in article_rows(engine)["dead-1"]["text"]
    assert fetch_page(feeds.url("/gone.html")) == Skip(
        feeds.url("/gone.html"), "page could not be fetched: HTTP 404 Not Found"
    )
    # The same from the command line: warnings, one line each, and exit 0.
    code = main(["--store", str(engine.store_path), "watch", "--once", "--feed", urls[1], "--feed", refused])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert code == 0 and warnings == [
        f"warning: skipped {urls[1]}: not an RSS or Atom feed (the server sent text/html)",
        f"warning: skipped {reasons[refused] and refused}: {reasons[refused]}",
    ]


def test_a_feed_with_no_change_support_still_embeds_nothing_the_second_time(
    engine: Engine, feeds: FeedServer
) -> None:
    urls = publish(feeds)
    for resource in feeds.resources.values():
        resource.etag = resource.last_modified = False
    first = poll_feed(urls["teasers"])
    assert [type(i).__name__ for i in first.items] == ["Article", "Article"] and first.requests == 3
    engine.ingest_items(first.items)
    stored = {"tram-2025", "library-2025"}
    second = poll_feed(urls["teasers"], first.state, stored.__contains__)
    # The server cannot say 304, so the feed is read again, but the known teasers' pages are not.
    assert (second.unchanged, second.items, second.requests) == (False, [], 1)
