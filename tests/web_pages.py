"""A loopback web server with the pages people share, and the ones a careful fetcher must refuse."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from types import TracebackType

from aiohttp import web

ARTICLE_HTML = """<!doctype html>
<html><head><title>Harbour ferry returns after storm repairs</title></head>
<body>
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<article>
<h1>Harbour ferry returns after storm repairs</h1>
<p>The Kestrel Bay ferry resumed sailings on Monday after six weeks of repairs to its storm-damaged hull.</p>
<p>Harbour master Ingrid Solberg said the repairs cost 240,000 krone, paid by the county council.</p>
<p>The crossing to Vellholm island takes forty minutes, and the first sailing leaves at 6.15 each morning.</p>
<p>Solberg said a second vessel, the Osprey, will join the route in the spring to cope with summer crowds.</p>
</article>
<footer>Copyright Kestrel Bay Gazette</footer>
</body></html>
"""

NOTES_TEXT = """Library extends opening hours

The Vellholm town library will stay open until nine in the evening from next month, the librarian
Tomas Brekke announced on Friday. The change is funded by a grant of 18,000 krone from a local trust.
"""

BIG = 50 * 1024 * 1024


class PageServer:
    """``async with PageServer() as pages: pages.url("/article.html")``; ``pages.hits`` counts requests."""

    def __init__(self, *, slow_seconds: float = 5.0) -> None:
        self.slow_seconds = slow_seconds
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def __aenter__(self) -> PageServer:
        app = web.Application()
        app.router.add_get("/article.html", self._article)
        app.router.add_get("/notes.txt", self._notes)
        app.router.add_get("/moved", self._moved)
        app.router.add_get("/to-loopback", self._to_loopback)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/big.html", self._big)
        app.router.add_get("/big-declared.html", self._big_declared)
        app.router.add_get("/slow.html", self._slow)
        app.router.add_get("/report.pdf", self._pdf)
        app.router.add_get("/missing", self._missing)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, request: web.Request) -> None:
        self.hits[request.path] += 1
        self.user_agents.append(request.headers.get("User-Agent", ""))

    async def _article(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(text=ARTICLE_HTML, content_type="text/html")

    async def _notes(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(text=NOTES_TEXT, content_type="text/plain")

    async def _moved(self, request: web.Request) -> web.Response:
        self._count(request)
        raise web.HTTPFound("/article.html")

    async def _to_loopback(self, request: web.Request) -> web.Response:
        # The first hop is a name the settings trust; the redirect points at a loopback address.
        self._count(request)
        raise web.HTTPFound(self.url("/article.html"))

    async def _loop(self, request: web.Request) -> web.Response:
        self._count(request)
        raise web.HTTPFound("/loop")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        # 50 MB without a Content-Length: only counting what arrives can stop it.
        self._count(request)
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"<p>" + b"filler text " * 5000 + b"</p>\n"
        sent = 0
        try:
            while sent < BIG:
                await response.write(block)
                sent += len(block)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the fetcher hung up, as it should
        return response

    async def _big_declared(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": str(BIG)})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await response.write(b"<p>" + b"x" * 65536)
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        self._count(request)
        await asyncio.sleep(self.slow_seconds)
        return web.Response(text=ARTICLE_HTML, content_type="text/html")

    async def _pdf(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(body=b"%PDF-1.4\n%binary", content_type="application/pdf")

    async def _missing(self, request: web.Request) -> web.Response:
        self._count(request)
        raise web.HTTPNotFound()
