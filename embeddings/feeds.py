"""RSS and Atom feeds: poll politely (ETag / Last-Modified), turn entries into Articles.

feedparser reads every flavour of RSS and Atom. When an entry carries only a summary, the linked
page is fetched and its main text extracted exactly as an HTML file would be on ingest.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import feedparser

from embeddings.articles import article_from_html, make_article
from embeddings.records import Article, Skip

log = logging.getLogger(__name__)

USER_AGENT = "newsbot/0.1"
TIMEOUT = 20.0
# Summaries shorter than this are teasers: the article itself is on the linked page.
MIN_ARTICLE_CHARS = 400


@dataclass
class FeedState:
    etag: str = ""
    modified: str = ""


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """GET a URL: (status, body, headers); 304 comes back as a status, not an error."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return 304, b"", dict(err.headers.items())
        raise


def poll_feed(
    url: str,
    state: FeedState,
    is_stored: Callable[[str], bool] = lambda _: False,
) -> tuple[list[Article | Skip], FeedState]:
    """The feed's entries as Articles, or nothing when the server says it has not changed.

    ``is_stored(entry_id)`` lets the caller skip fetching the pages of entries it already holds.
    """
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.modified:
        headers["If-Modified-Since"] = state.modified
    try:
        status, body, response_headers = fetch(url, headers)
    except (urllib.error.URLError, OSError, ValueError) as err:
        return [Skip(url, f"feed could not be fetched: {err}")], state
    if status == 304:
        return [], state
    new_state = FeedState(response_headers.get("ETag", ""), response_headers.get("Last-Modified", ""))
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        return [
            Skip(url, f"not an RSS or Atom feed: {parsed.get('bozo_exception', 'unreadable')}")
        ], new_state
    return list(_entries(url, parsed.entries, is_stored)), new_state


def _entries(feed_url: str, entries: list, is_stored: Callable[[str], bool]) -> Iterator[Article | Skip]:
    for entry in entries:
        link = entry.get("link", "")
        entry_id = entry.get("id") or link
        if not entry_id:
            yield Skip(feed_url, f"entry {entry.get('title', '?')!r} has neither id nor link")
            continue
        if is_stored(entry_id):
            continue
        yield _entry_article(feed_url, entry, entry_id, link)


def _entry_article(feed_url: str, entry: dict, entry_id: str, link: str) -> Article | Skip:
    title = entry.get("title", "")
    author = entry.get("author", "")
    published = entry.get("published") or entry.get("updated") or ""
    contents = entry.get("content") or []
    html = contents[0].get("value", "") if contents else ""
    text = _html_text(html, link or feed_url) if html else ""
    if len(text) < MIN_ARTICLE_CHARS and link:
        page = _fetch_page(link)
        if isinstance(page, Article):
            return make_article(
                id=entry_id,
                title=title or page.title,
                text=page.text,
                author=author or page.author,
                published=published or page.published,
                source=link,
                url=link,
            )
        log.warning("%s", page)
    if not text:
        text = _html_text(entry.get("summary", ""), link or feed_url)
    if not text:
        return Skip(link or feed_url, "feed entry has no text and its page gave none")
    return make_article(
        id=entry_id,
        title=title,
        text=text,
        author=author,
        published=published,
        source=link or feed_url,
        url=link,
    )


def _html_text(html: str, source: str) -> str:
    if not html.strip():
        return ""
    if "<" not in html:
        return html.strip()
    article = article_from_html(f"<html><body><article>{html}</article></body></html>", source)
    return article.text if isinstance(article, Article) else ""


def _fetch_page(url: str) -> Article | Skip:
    try:
        _status, body, headers = fetch(url)
    except (urllib.error.URLError, OSError, ValueError) as err:
        return Skip(url, f"page could not be fetched: {err}")
    charset = "utf-8"
    content_type = headers.get("Content-Type", "")
    if "charset=" in content_type:
        charset = content_type.split("charset=")[-1].split(";")[0].strip()
    return article_from_html(body.decode(charset, errors="replace"), url, url)


def load_states(path: Path) -> dict[str, FeedState]:
    try:
        return {url: FeedState(**value) for url, value in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


def save_states(path: Path, states: dict[str, FeedState]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({url: asdict(state) for url, state in states.items()}))
    tmp.replace(path)
