"""Fetching shared links: what is read, and what is refused (with a reason a user can act on)."""

from __future__ import annotations

import ipaddress

import pytest

from embeddings.links import (
    FetchPolicy,
    LinkRefused,
    canonical_url,
    fetch,
    find_links,
    page_articles,
    refusal,
)
from tests.web_pages import PageServer

LOOPBACK_OK = FetchPolicy(allow_private=True, timeout=3.0)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints live here
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("64:ff9b::a00:1", "reserved"),  # NAT64 of 10.0.0.1
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4 inside IPv6 is checked as IPv4
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_links_are_found_in_chat_text() -> None:
    text = "look <https://news.example/a?x=1#top>, and http://other.example/b). ftp://no.example/c"
    assert find_links(text) == ["https://news.example/a?x=1", "http://other.example/b"]
    assert canonical_url("https://a.example/p#frag") == "https://a.example/p"


async def test_a_page_is_fetched_and_its_article_extracted() -> None:
    async with PageServer() as pages:
        page = await fetch(pages.url("/moved"), LOOPBACK_OK)
        assert page.url.endswith("/article.html") and page.content_type == "text/html"
        assert pages.user_agents[-1].startswith("newsbot/")
    [article] = page_articles(page, item_id="guild:1:x", source=pages.url("/moved"))
    assert not isinstance(article, type(None))
    assert getattr(article, "title", "") == "Harbour ferry returns after storm repairs"
    assert "Ingrid Solberg" in getattr(article, "text", "") and "Copyright" not in getattr(
        article, "text", ""
    )


async def test_loopback_is_refused_unless_allowed() -> None:
    async with PageServer() as pages:
        with pytest.raises(LinkRefused, match="loopback"):
            await fetch(pages.url("/article.html"), FetchPolicy(timeout=3.0))
        with pytest.raises(LinkRefused, match="loopback"):
            await fetch(pages.url("/article.html", host="localhost"), FetchPolicy(timeout=3.0))
        assert pages.hits["/article.html"] == 0


async def test_a_redirect_to_loopback_is_refused() -> None:
    # localhost is trusted by name, so the first hop goes through; the redirect to 127.0.0.1 must not.
    policy = FetchPolicy(trusted_hosts=frozenset({"localhost"}), timeout=3.0)
    async with PageServer() as pages:
        with pytest.raises(LinkRefused, match=r"127\.0\.0\.1 is not a public address"):
            await fetch(pages.url("/to-loopback", host="localhost"), policy)
        assert pages.hits["/to-loopback"] == 1 and pages.hits["/article.html"] == 0


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big.html", "over the 5.0 MB limit"),
        ("/big-declared.html", "the page is 50.0 MB, over the 5.0 MB limit"),
        ("/slow.html", "took longer than 1 s"),
        ("/report.pdf", "not a web page or text (application/pdf)"),
        ("/loop", "more than 5 redirects"),
        ("/missing", "answered 404"),
    ],
)
async def test_unreadable_pages_get_a_reason(path: str, reason: str) -> None:
    policy = FetchPolicy(allow_private=True, timeout=1.0)
    async with PageServer(slow_seconds=3.0) as pages:
        with pytest.raises(LinkRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
            await fetch(pages.url(path), policy)
        if path == "/loop":
            assert pages.hits["/loop"] == 6  # the first request and five redirects


async def test_other_schemes_are_refused() -> None:
    for url in ("ftp://files.example/a.html", "file:///etc/passwd", "gopher://x.example/"):
        with pytest.raises(LinkRefused, match="only http and https"):
            await fetch(url, FetchPolicy())
