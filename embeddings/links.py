"""Fetching the web pages people share, without letting them use the bot to reach inside the network.

A link posted in a chat is untrusted input that makes this server send a request: server-side
request forgery. So a link is fetched only when it is http(s), its host resolves to public addresses
only (private, loopback, link-local, multicast, reserved and unspecified addresses are refused, IPv4
and IPv6, including IPv4 addresses inside IPv6 ones), and every redirect (at most ``max_redirects``)
is checked the same way. The connection goes to the addresses that were checked (the resolver that
aiohttp connects with filters them again), so a name that resolves differently a second time gains
nothing. The body is read up to ``max_bytes`` and no further, the whole fetch has one deadline, and
only HTML and text content types are read.

``allow_private`` (the ``allow_private_urls`` setting) turns the address check off, for tests on a
loopback server and for intranet deployments; ``trusted_hosts`` exempts named hosts only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from embeddings.articles import load_bytes
from embeddings.records import Article, Skip

USER_AGENT = "newsbot/0.1 (reads links shared in a Discord server; one request per shared link)"
# What is read as an article, and the loader (by file suffix) that reads it.
CONTENT_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
}
_URL = re.compile(r"https?://[^\s<>|\"']+", re.IGNORECASE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LinkRefused(Exception):
    """A link that is not fetched, or not read; the message is a short reason a user can be shown."""


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False
    trusted_hosts: frozenset[str] = frozenset()
    max_bytes: int = 5 * 1024 * 1024
    timeout: float = 15.0
    max_redirects: int = 5
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class Page:
    url: str  # where the content finally came from, after redirects
    content_type: str
    body: bytes


def find_links(text: str) -> list[str]:
    """The http(s) links in a message, each once, without trailing punctuation or <angle brackets>."""
    links = [m.group(0).rstrip(".,;:!?)]}*_~`") for m in _URL.finditer(text)]
    return list(dict.fromkeys(canonical_url(link) for link in links))


def canonical_url(url: str) -> str:
    """The URL without its #fragment (the same page), so a link is known however it was written."""
    return urldefrag(url.strip())[0]


def refusal(address: IPAddress) -> str | None:
    """Why a connection to this address is refused; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return refusal(embedded)
    # The most telling kind first: link-local and loopback addresses are "private" too.
    for kind in ("loopback", "link_local", "site_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind}", False):  # site-local (fec0::/10) is IPv6 only
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only addresses the policy allows: what is connected to was checked."""

    def __init__(self, policy: FetchPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if self.policy.allow_private or host.lower() in self.policy.trusted_hosts:
            return found
        kept = [r for r in found if refusal(ipaddress.ip_address(r["host"])) is None]
        if not kept:
            raise OSError(f"{host} resolves only to addresses that are not public")
        return kept

    async def close(self) -> None:
        await self.inner.close()


async def check_url(url: str, policy: FetchPolicy, resolver: AbstractResolver) -> None:
    """Refuse a URL that is not http(s), or whose host is, or resolves to, a non-public address."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise LinkRefused(f"only http and https links are fetched, not {parts.scheme or 'this'}")
    host = parts.hostname
    if not host:
        raise LinkRefused("the link has no host name")
    if parts.username or parts.password:
        raise LinkRefused("links with a user name or password are not fetched")
    if policy.allow_private or host.lower() in policy.trusted_hosts:
        return
    try:
        addresses: Iterable[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = await resolver.resolve(host, parts.port or 0, socket.AF_UNSPEC)
        except OSError as err:
            raise LinkRefused(f"{host} could not be resolved ({err.strerror or err})") from None
        addresses = [ipaddress.ip_address(r["host"]) for r in found]
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise LinkRefused(f"{host} is not a public address ({reason})")


async def fetch(url: str, policy: FetchPolicy, *, resolver: AbstractResolver | None = None) -> Page:
    """GET a shared link under ``policy``; LinkRefused with a short reason when it cannot be read."""
    dns = resolver or aiohttp.ThreadedResolver()
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(policy, dns), limit=4)
    headers = {"User-Agent": policy.user_agent, "Accept": "text/html, text/plain;q=0.9, */*;q=0.1"}
    try:
        async with (
            asyncio.timeout(policy.timeout),
            # No proxies from the environment: a proxy would make the address checks meaningless.
            aiohttp.ClientSession(connector=connector, headers=headers, trust_env=False) as session,
        ):
            return await _follow(session, url, policy, dns)
    except TimeoutError:
        raise LinkRefused(f"the page took longer than {policy.timeout:g} s") from None
    except aiohttp.ClientConnectorError as err:
        raise LinkRefused(f"could not connect to {urlsplit(url).hostname} ({_reason(err)})") from None
    except aiohttp.ClientError as err:
        raise LinkRefused(f"the request failed ({type(err).__name__})") from None


async def _follow(
    session: aiohttp.ClientSession, url: str, policy: FetchPolicy, dns: AbstractResolver
) -> Page:
    for _ in range(policy.max_redirects + 1):
        await check_url(url, policy, dns)
        async with session.get(url, allow_redirects=False) as response:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise LinkRefused(f"a redirect ({response.status}) without a Location")
                url = canonical_url(urljoin(url, location))
                continue
            if response.status >= 400:
                raise LinkRefused(f"the server answered {response.status} {response.reason or ''}".strip())
            content_type = (response.content_type or "").lower()
            if content_type not in CONTENT_TYPES:
                raise LinkRefused(f"not a web page or text ({content_type or 'no content type'})")
            length = response.content_length
            if length is not None and length > policy.max_bytes:
                raise LinkRefused(f"the page is {_mb(length)}, over the {_mb(policy.max_bytes)} limit")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > policy.max_bytes:
                    raise LinkRefused(f"the page is over the {_mb(policy.max_bytes)} limit")
            return Page(str(response.url), content_type, bytes(body))
    raise LinkRefused(f"more than {policy.max_redirects} redirects")


def page_articles(page: Page, *, item_id: str, source: str) -> list[Article | Skip]:
    """The article(s) in a fetched page or an attachment, under the item id it is stored as."""
    suffix = CONTENT_TYPES.get(page.content_type, "")
    return with_ids(load_bytes(page.body, f"page{suffix}"), item_id=item_id, source=source, url=page.url)


def with_ids(
    loaded: Iterable[Article | Skip], *, item_id: str, source: str, url: str = ""
) -> list[Article | Skip]:
    """Loaded articles re-keyed: the first under ``item_id``, more (a JSON list) under ``item_id#n``."""
    out: list[Article | Skip] = []
    for n, item in enumerate(loaded):
        if isinstance(item, Skip):
            out.append(Skip(source, item.reason))
            continue
        out.append(
            dataclasses.replace(
                item,
                id=item_id if n == 0 else f"{item_id}#{n}",
                source=source,
                url=item.url or url,
                title=item.title or source,
            )
        )
    return out


def _reason(err: aiohttp.ClientConnectorError) -> str:
    cause: Any = err.os_error
    return str(cause.strerror or cause) if cause is not None else str(err)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


__all__: Sequence[str] = (
    "CONTENT_TYPES",
    "CheckedResolver",
    "FetchPolicy",
    "LinkRefused",
    "Page",
    "canonical_url",
    "check_url",
    "fetch",
    "find_links",
    "page_articles",
    "refusal",
    "with_ids",
)
