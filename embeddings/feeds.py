"""RSS and Atom feeds: poll politely (ETag / Last-Modified), turn entries into Articles.

feedparser reads every flavour of RSS and Atom. An entry that carries its article (``content:encoded``,
Atom ``content``, or a long ``description``) becomes an Article directly; one that carries only a
teaser has its linked page fetched once and the page's main text extracted exactly as an HTML file
is on ingest (:func:`embeddings.articles.article_from_html`).

A feed that has not changed costs one conditional request: the server answers 304 and nothing is
parsed or embedded. Errors are values here too: a feed that cannot be fetched or is not a feed comes
back as a ``Skip(url, reason)`` with a one-line reason.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import feedparser

from embeddings.articles import article_from_html, make_article
from embeddings.records import Article, Skip

log = logging.getLogger(__name__)

USER_AGENT = "newsbot/0.1 (feed reader)"
TIMEOUT = 20.0
# Larger bodies are refused rather than read into memory.
MAX_BYTES = 20 * 1024 * 1024
# Entry text shorter than this is a teaser: the article itself is on the linked page.
MIN_ARTICLE_CHARS = 400
STATES_FILE = "feeds.json"
# "jane@example.com (Jane Doe)"
_EMAIL_NAME = re.compile(r"^[^\s@()]+@[^\s()]+\s*\(([^()]+)\)$")
# charset=... in a Content-Type header or a page's <meta> tag.
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class FetchError(Exception):
    """A URL could not be fetched; the message is one line saying why."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]  # lower-case names


@dataclass
class FeedState:
    """The validators of a feed's last response, sent back so an unchanged feed answers 304."""

    etag: str = ""
    modified: str = ""


@dataclass
class FeedPoll:
    """One poll of one feed: its entries as Articles (or Skips), and what to send next time."""

    url: str
    state: FeedState
    items: list[Article | Skip] = field(default_factory=list)
    unchanged: bool = False  # the server answered 304 Not Modified
    requests: int = 0  # HTTP requests made: the feed and any linked pages


def fetch(url: str, headers: Mapping[str, str] | None = None, max_bytes: int = MAX_BYTES) -> Response:
    """GET an http(s) URL; 304 comes back as a status, every failure as a one-line FetchError."""
    if not url.startswith(("http://", "https://")):
        raise FetchError("not an http:// or https:// URL")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise FetchError(f"response is over the {max_bytes // (1024 * 1024)} MB limit")
            return Response(response.status, body, {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return Response(304, b"", {k.lower(): v for k, v in (err.headers or {}).items()})
        raise FetchError(f"HTTP {err.code} {err.reason}".strip()) from None
    except urllib.error.URLError as err:
        raise FetchError(_one_line(err.reason)) from None
    except TimeoutError:
        raise FetchError(f"no answer within {TIMEOUT:.0f} s") from None
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise FetchError(_one_line(err)) from None


def _one_line(reason: object) -> str:
    text = " ".join(str(reason).split()) or type(reason).__name__
    return text[:200]


def poll_feed(
    url: str,
    state: FeedState | None = None,
    is_stored: Callable[[str], bool] = lambda _: False,
) -> FeedPoll:
    """The feed's entries as Articles, or nothing when the server says the feed has not changed.

    ``is_stored(entry_id)`` tells which teaser entries were stored before: their pages are not
    fetched again. Entries that carry their text are always returned; ingest skips unchanged ones
    by content hash without embedding them.
    """
    state = state or FeedState()
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.modified:
        headers["If-Modified-Since"] = state.modified
    poll = FeedPoll(url, state, requests=1)
    try:
        response = fetch(url, headers)
    except FetchError as err:
        poll.items.append(Skip(url, f"feed could not be fetched: {err}"))
        return poll
    if response.status == 304:
        poll.unchanged = True
        return poll
    parsed = feedparser.parse(response.body, response_headers=dict(response.headers))
    if not parsed.get("version") and not parsed.entries:
        poll.items.append(Skip(url, f"not an RSS or Atom feed ({_why_not_a_feed(response, parsed)})"))
        return poll
    # Only a feed that parsed is remembered, so a broken response is fetched in full next time.
    poll.state = FeedState(response.headers.get("etag", ""), response.headers.get("last-modified", ""))
    for entry in parsed.entries:
        item, requests = entry_article(url, entry, is_stored)
        poll.requests += requests
        if item is not None:
            poll.items.append(item)
    return poll


def _why_not_a_feed(response: Response, parsed: Any) -> str:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not response.body.strip():
        return "empty response"
    if content_type and not any(word in content_type for word in ("xml", "rss", "atom", "text/plain")):
        return f"the server sent {content_type}"
    problem = parsed.get("bozo_exception")
    return _one_line(problem) if problem else "no channel or entries in it"


def entry_article(
    feed_url: str, entry: Mapping[str, Any], is_stored: Callable[[str], bool] = lambda _: False
) -> tuple[Article | Skip | None, int]:
    """One entry as an Article (None: a teaser already stored), and how many pages it fetched."""
    link = str(entry.get("link") or "").strip()
    entry_id = str(entry.get("id") or link).strip()
    if not entry_id:
        return Skip(feed_url, f"entry {entry.get('title', '?')!r} has neither id nor link"), 0
    title = str(entry.get("title") or "")
    author = _author(entry)
    published = _date(entry)
    text = _entry_text(entry, link or feed_url)
    requests = 0
    if len(text) < MIN_ARTICLE_CHARS and link:
        if is_stored(entry_id):
            return None, 0
        requests = 1
        page = fetch_page(link)
        if isinstance(page, Article) and len(page.text) >= len(text):
            text = page.text
            title = title or page.title
            author = author or page.author
            published = published or page.published
        elif isinstance(page, Skip):
            log.warning("%s; using the feed's summary", page)
    if not text:
        return Skip(link or feed_url, "feed entry has no text, and its page gave none"), requests
    article = make_article(
        id=entry_id,
        title=title,
        text=text,
        author=author,
        published=published,
        source=link or feed_url,
        url=link,
    )
    return article, requests


def _entry_text(entry: Mapping[str, Any], source: str) -> str:
    """The longest text the entry carries: its content, else its summary (description)."""
    candidates = [str(c.get("value", "")) for c in entry.get("content") or [] if isinstance(c, Mapping)]
    candidates.append(str(entry.get("summary") or ""))
    texts = [_html_text(html, source) for html in candidates if html.strip()]
    return max(texts, key=len, default="")


def _author(entry: Mapping[str, Any]) -> str:
    """The author's name. RSS <author> is "email (Name)"; feedparser's own split of it breaks on
    top-level domains longer than four letters, so that form is read here."""
    raw = " ".join(str(entry.get("author") or "").split())
    match = _EMAIL_NAME.match(raw)
    if match:
        return match.group(1).strip()
    detail = entry.get("author_detail") or {}
    name = str(detail.get("name") or "").strip()
    if name:
        return name
    return "" if "@" in raw and " " not in raw else raw  # a bare address is not a byline


def _date(entry: Mapping[str, Any]) -> str:
    for key in ("published", "updated"):
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            return time.strftime("%Y-%m-%d", parsed)
        if entry.get(key):
            return str(entry[key])
    return ""


def _html_text(html: str, source: str) -> str:
    if not html.strip():
        return ""
    if "<" not in html:
        return html.strip()
    article = article_from_html(f"<html><body><article>{html}</article></body></html>", source)
    return article.text if isinstance(article, Article) else ""


def fetch_page(url: str) -> Article | Skip:
    """The main text of a linked page, extracted as an HTML file would be on ingest."""
    try:
        response = fetch(url)
    except FetchError as err:
        return Skip(url, f"page could not be fetched: {err}")
    content_type = response.headers.get("content-type", "text/html")
    if "html" not in content_type and not content_type.startswith("text/"):
        return Skip(url, f"page is {content_type.split(';')[0]}, not HTML")
    charset = "utf-8"
    head = response.body[:4096].decode("ascii", "replace")
    declared = _CHARSET.search(content_type) or _CHARSET.search(head)
    if declared:
        charset = declared.group(1)
    try:
        html = response.body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        html = response.body.decode("utf-8", errors="replace")
    return article_from_html(html, url, url)


def load_states(path: Path) -> dict[str, FeedState]:
    try:
        return {url: FeedState(**value) for url, value in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def save_states(path: Path, states: Mapping[str, FeedState]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({url: asdict(state) for url, state in states.items()}, indent=1))
    tmp.replace(path)
