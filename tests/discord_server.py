"""A Discord-compatible server (REST + gateway) on 127.0.0.1 for running the real discord.py client in tests.

Patching discord.py internals would couple the tests to private code and skip what most often breaks in
production: payload shapes, gateway compression, heartbeats, interaction deadlines and Discord's size limits.
So the unpatched client is pointed at this server instead. It speaks enough of API v10 for a
``commands.Bot`` with app commands, validates what the bot sends the way Discord does, and records
everything the bot does so that tests can wait on it::

    async with FakeDiscord(heartbeat_interval=0.5) as server:
        bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        async with server.running(bot):
            message_id = await server.send_message(f"{server.bot_user.mention} hello")
            reply = await server.wait_for_message(lambda r: r.reply_to == message_id)
        assert server.problems == []

discord.py's endpoints are module globals, so only one FakeDiscord can be active at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import functools
import json
import logging
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiohttp
import discord
import yarl
from aiohttp import web

__all__ = [
    "CallbackType",
    "FakeDiscord",
    "FakeInteraction",
    "FakeUser",
    "Fault",
    "GatewayConnection",
    "Heartbeat",
    "Record",
    "Rejection",
]

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
_DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway intents that change what this server delivers.
_INTENT_GUILDS = 1 << 0
_INTENT_GUILD_MESSAGES = 1 << 9
_INTENT_MESSAGE_CONTENT = 1 << 15

_FLAG_EPHEMERAL = 1 << 6
_FLAG_LOADING = 1 << 7
_FLAG_COMPONENTS_V2 = 1 << 15

# GATEWAY_*_LIMITED: privileged intents are "enabled in the developer portal"; any the bot asks for work.
_APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19)
_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

_APP_COMMAND_INTERACTION = 2
_COMPONENT_INTERACTION = 3
_OPTION_SUBCOMMAND = 1
_OPTION_SUBCOMMAND_GROUP = 2
# STRING, INTEGER, BOOLEAN, NUMBER: options whose value needs no "resolved" objects in the interaction.
_PLAIN_OPTION_TYPES = frozenset({3, 4, 5, 10})

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")

_T = TypeVar("_T")
# The parsed request body, kept on the request so that a rejection can record what was rejected.
_JSON_BODY = web.RequestKey("json_body", object)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CallbackType(enum.IntEnum):
    """Interaction callback (response) types, as in ``POST /interactions/{id}/{token}/callback``."""

    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


# Callback types that create (4, 5) or replace (7) a message, so their response carries a message resource.
_MESSAGE_CALLBACKS = frozenset(
    {CallbackType.CHANNEL_MESSAGE, CallbackType.DEFERRED_CHANNEL_MESSAGE, CallbackType.UPDATE_MESSAGE}
)

RecordKind = Literal[
    "message",  # POST /channels/{id}/messages
    "message_edit",  # PATCH /channels/{id}/messages/{id}
    "message_delete",
    "interaction_callback",  # POST /interactions/{id}/{token}/callback; see Record.callback_type
    "followup",  # POST /webhooks/{app}/{token}
    "original_edit",  # PATCH /webhooks/{app}/{token}/messages/@original
    "followup_edit",  # PATCH /webhooks/{app}/{token}/messages/{id}
    "original_delete",
    "followup_delete",
    "thread_create",
    "typing",
    "reaction_add",
    "reaction_remove",
    "commands_sync",  # PUT .../commands; channel_id holds the guild id of a guild sync, None when global
]

# Kinds whose body is message content the bot showed to users (interaction callbacks only for types 4 and 7).
_MESSAGE_KINDS = frozenset({"message", "message_edit", "followup", "original_edit", "followup_edit"})


@dataclass(frozen=True)
class FakeUser:
    id: int
    username: str
    role_ids: tuple[int, ...] = ()
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.username,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
        }


@dataclass
class Heartbeat:
    """One op 1 from the client. Times are ``time.monotonic()``; ``acked_at`` is when op 11 went out."""

    received_at: float
    sequence: int | None
    acked_at: float | None = None


@dataclass(frozen=True)
class Record:
    """Something the bot did through the REST API, in arrival order (``seq`` is the index in ``records``).

    ``body`` is the request's JSON (``payload_json`` for multipart requests, whose files are named in
    ``files``). ``message`` is a snapshot of the full message object the request created, changed or
    deleted, after Discord's processing: its ``mentions``/``mention_everyone`` say who was actually pinged
    given ``allowed_mentions`` (assuming the bot may ping everyone).
    """

    seq: int
    kind: RecordKind
    at: float
    body: Any
    channel_id: int | None = None
    message_id: int | None = None
    interaction_id: int | None = None
    callback_type: CallbackType | None = None
    files: tuple[str, ...] = ()
    message: dict[str, Any] | None = None

    @property
    def is_message(self) -> bool:
        """Whether this delivered message content: a send, follow-up, edit, or callback of type 4 or 7."""
        if self.kind == "interaction_callback":
            return self.callback_type in (CallbackType.CHANNEL_MESSAGE, CallbackType.UPDATE_MESSAGE)
        return self.kind in _MESSAGE_KINDS

    @property
    def payload(self) -> dict[str, Any]:
        """The message part of the body: ``data`` of an interaction callback, else the body itself."""
        if not isinstance(self.body, dict):
            return {}
        if self.kind == "interaction_callback":
            return self.body.get("data") or {}
        return self.body

    @property
    def content(self) -> str | None:
        return self.payload.get("content")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.payload.get("embeds") or []

    @property
    def text(self) -> str:
        """Everything a reader sees: content, then each embed's description and fields."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts.append(embed.get("description", ""))
            parts.extend(f"{f['name']}\n{f['value']}" for f in embed.get("fields", []))
        return "\n".join(parts)

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.payload.get("components") or []

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        """Whether only the invoking user sees the message (for a deferred one, as the defer decided)."""
        if self.message is not None:
            return bool(self.message["flags"] & _FLAG_EPHEMERAL)
        return bool(self.flags & _FLAG_EPHEMERAL)

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.payload.get("allowed_mentions")

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to (``message_reference``), if any."""
        reference = self.payload.get("message_reference")
        return int(reference["message_id"]) if reference else None


@dataclass(frozen=True)
class Rejection:
    """A request the server refused the way Discord would (4xx with a Discord error body)."""

    at: float
    method: str
    path: str
    status: int
    error: dict[str, Any]
    body: Any

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {json.dumps(self.error)}"


# Discord's JSON error code and message for the statuses tests inject most (any status can be given).
_FAULT_DEFAULTS: dict[int, tuple[int, str]] = {
    400: (50035, "Invalid Form Body"),
    401: (0, "401: Unauthorized"),
    403: (50013, "Missing Permissions"),
    404: (10062, "Unknown interaction"),
    429: (0, "You are being rate limited."),
    500: (0, "500: Internal Server Error"),
    502: (0, "502: Bad Gateway"),
    503: (0, "503: Service Unavailable"),
}


@dataclass
class Fault:
    """An injected failure: requests whose method and path (without ``/api/v10``) match get ``status``.

    ``times`` is how many requests fail (None: all until ``FakeDiscord.clear_faults``); ``hits`` counts
    them. A 429 carries ``retry_after`` in its body and Retry-After header, as Discord's do.
    """

    method: str
    path: re.Pattern[str]
    status: int
    code: int
    message: str
    times: int | None = 1
    retry_after: float = 0.5
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.times is None or self.hits < self.times)
            and self.method in ("*", method)
            and self.path.fullmatch(path) is not None
        )

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        headers = {"Content-Type": "application/json"}
        if self.status == 429:
            body.update(retry_after=self.retry_after, **{"global": False})
            # discord.py takes a 429 without Via for a Cloudflare ban and does not retry it.
            headers.update(
                {"Retry-After": str(self.retry_after), "X-RateLimit-Scope": "user", "Via": "1.1 google"}
            )
        return web.Response(status=self.status, body=json.dumps(body).encode(), headers=headers)


@dataclass
class FakeInteraction:
    """An interaction the server dispatched, updated as the bot answers it. Times are ``time.monotonic()``."""

    id: int
    token: str
    type: int
    channel_id: int
    user: FakeUser
    dispatched_at: float
    # The message carrying the clicked component (component interactions only).
    message_id: int | None = None
    callback_type: CallbackType | None = None
    acked_at: float | None = None
    # The message that @original refers to: the response message, or for 6/7 the component's message.
    original_message_id: int | None = None


class GatewayConnection:
    """One websocket the client opened; kept after it closes so tests can inspect reconnects."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: str | None, encoding: str) -> None:
        self.compress = compress
        self.encoding = encoding
        self.opened_at = time.monotonic()
        self.closed_at: float | None = None
        self.identify: dict[str, Any] | None = None
        self.resumed = False
        self._ws = ws
        self._compressor = _stream_compressor(compress)
        self._send_lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self.closed_at is None and not self._ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        # A stream compressor's output is only decodable in the order it was produced.
        async with self._send_lock:
            if self._compressor is None:
                await self._ws.send_str(data.decode())
            else:
                await self._ws.send_bytes(self._compressor(data))

    async def close(self, code: int, message: str = "") -> None:
        await self._ws.close(code=code, message=message.encode())


def _stream_compressor(kind: str | None) -> Callable[[bytes], bytes] | None:
    """The compressor for the gateway's ``compress`` query; discord.py decodes only binary frames."""
    if kind is None:
        return None
    if kind == "zlib-stream":
        # One stream for the whole connection; Z_SYNC_FLUSH ends each message with the 00 00 ff ff marker
        # that discord.py waits for before inflating.
        zlib_stream = zlib.compressobj()
        return lambda data: zlib_stream.compress(data) + zlib_stream.flush(zlib.Z_SYNC_FLUSH)
    if kind == "zstd-stream":
        # discord.py asks for zstd only when it can import one of these, in this order, in this same process.
        try:
            import zstandard
        except ImportError:
            from compression import zstd  # Python >= 3.14

            zstd_stream = zstd.ZstdCompressor()
            return lambda data: zstd_stream.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)
        zstandard_stream = zstandard.ZstdCompressor().compressobj()
        return lambda data: (
            zstandard_stream.compress(data) + zstandard_stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        )
    raise ValueError(f"unsupported gateway compression {kind!r}")


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    # Every dispatch, so a RESUME can replay what the client missed while disconnected.
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: GatewayConnection | None = None


class _ApiError(Exception):
    """A Discord-style error response: status plus ``{"code", "message", "errors"}``."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message}
        if errors:
            self.body["errors"] = errors


class _FormErrors:
    """Collects field errors in Discord's shape: ``{"embeds": {"0": {"title": {"_errors": [...]}}}}``."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise _ApiError(400, 50035, "Invalid Form Body", self.tree)


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly this; json_response adds a charset.
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def _timestamp() -> str:
    return datetime.now(UTC).isoformat()


def _check_embeds(embeds: list[dict[str, Any]], errors: _FormErrors, path: tuple[str, ...]) -> None:
    errors.max_length(path, embeds, 10)
    total = 0
    for index, embed in enumerate(embeds):
        at = (*path, str(index))
        errors.max_length((*at, "title"), embed.get("title"), 256)
        errors.max_length((*at, "description"), embed.get("description"), 4096)
        errors.max_length((*at, "footer", "text"), (embed.get("footer") or {}).get("text"), 2048)
        errors.max_length((*at, "author", "name"), (embed.get("author") or {}).get("name"), 256)
        fields = embed.get("fields") or []
        errors.max_length((*at, "fields"), fields, 25)
        for field_index, embed_field in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                value = embed_field.get(key)
                if value is None or not str(value).strip():
                    errors.add(
                        (*at, "fields", field_index, key), "BASE_TYPE_REQUIRED", "This field is required"
                    )
                else:
                    errors.max_length((*at, "fields", field_index, key), str(value), limit)
        total += sum(len(str(embed.get(key) or "")) for key in ("title", "description"))
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
        total += sum(len(str(f.get("name") or "")) + len(str(f.get("value") or "")) for f in fields)
    if total > 6000:
        errors.add(path, "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _check_components(components: list[dict[str, Any]], errors: _FormErrors, path: tuple[str, ...]) -> None:
    """Classic components: up to 5 action rows of up to 5 children, labels <= 80, unique custom ids <= 100."""
    errors.max_length(path, components, 5)
    seen: set[str] = set()
    for row_index, row in enumerate(components):
        children = row.get("components") or []
        if row.get("type") != 1 or not children:
            errors.add(
                (*path, row_index), "COMPONENT_LAYOUT_INVALID", "Top-level components must be action rows"
            )
            continue
        errors.max_length((*path, row_index, "components"), children, 5)
        for child_index, child in enumerate(children):
            at: tuple[str | int, ...] = (*path, row_index, "components", child_index)
            errors.max_length((*at, "label"), child.get("label"), 80)
            custom_id = child.get("custom_id")
            errors.max_length((*at, "custom_id"), custom_id, 100)
            if custom_id in seen:
                errors.add(
                    (*at, "custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            if custom_id is not None:
                seen.add(custom_id)


def _check_message_fields(body: Mapping[str, Any], errors: _FormErrors, path: tuple[str, ...] = ()) -> None:
    """Size limits on whatever message fields ``body`` has (a send, or the partial body of an edit)."""
    content = body.get("content")
    if content is not None:
        errors.max_length((*path, "content"), str(content), 2000)
    if body.get("embeds"):
        _check_embeds(body["embeds"], errors, (*path, "embeds"))
    if body.get("components") and not int(body.get("flags") or 0) & _FLAG_COMPONENTS_V2:
        _check_components(body["components"], errors, (*path, "components"))


def _check_not_empty(message: Mapping[str, Any]) -> None:
    # Discord trims content, so whitespace alone is empty too; this is its own code, not 50035.
    if not (
        str(message.get("content") or "").strip()
        or message.get("embeds")
        or message.get("components")
        or message.get("attachments")
        or message.get("sticker_ids")
        or message.get("poll")
    ):
        raise _ApiError(400, 50006, "Cannot send an empty message")


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        found = _find_component(component.get("components") or [], custom_id)
        if found is not None:
            return found
    return None


class _Snowflakes:
    """Time-based like Discord's, so discord.py's ``created_at`` is sane, and strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


class FakeDiscord:
    """A Discord API v10 server with one guild, its roles, members and a text channel.

    Members: ``bot_user`` (the bot; the application id is its id, as on Discord), ``owner`` (guild owner,
    so has every permission), ``admin`` (has the "Admin" role with MANAGE_GUILD) and ``user`` (a plain
    member; the default author of injected messages and interactions). ``add_member`` makes more.

    Times (records, heartbeats, interactions) are ``time.monotonic()``.
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        heartbeat_interval: float = 41.25,
        interaction_deadline: float = 3.0,
    ) -> None:
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        # Discord forgets an interaction unanswered for 3 s: a later callback gets 404 Unknown interaction.
        self.interaction_deadline = interaction_deadline
        self.port = 0

        self._ids = _Snowflakes()
        self.application_id = self._ids.next()
        self.guild_id = self._ids.next()
        # Discord gives the @everyone role the guild's id.
        self.everyone_role_id = self.guild_id
        self.admin_role_id = self._ids.next()
        self.bot_role_id = self._ids.next()
        self.channel_id = self._ids.next()
        self.bot_user = FakeUser(self.application_id, "newsbot", (self.bot_role_id,), bot=True)
        self.owner = FakeUser(self._ids.next(), "owner")
        self.admin = FakeUser(self._ids.next(), "alice", (self.admin_role_id,))
        self.user = FakeUser(self._ids.next(), "bob")
        self.members: dict[int, FakeUser] = {
            u.id: u for u in (self.bot_user, self.owner, self.admin, self.user)
        }
        self._joined_at = _timestamp()

        base = discord.Permissions(
            view_channel=True,
            send_messages=True,
            send_messages_in_threads=True,
            create_public_threads=True,
            embed_links=True,
            attach_files=True,
            add_reactions=True,
            read_message_history=True,
            use_application_commands=True,
        )
        self.roles: dict[int, dict[str, Any]] = {
            self.everyone_role_id: self._role(self.everyone_role_id, "@everyone", base, position=0),
            self.bot_role_id: self._role(
                self.bot_role_id, "newsbot", base, position=1, bot_id=self.bot_user.id
            ),
            self.admin_role_id: self._role(
                self.admin_role_id,
                "Admin",
                discord.Permissions(manage_guild=True, manage_messages=True),
                position=2,
            ),
        }
        # The text channel and every thread, by id.
        self.channels: dict[int, dict[str, Any]] = {
            self.channel_id: {
                "id": str(self.channel_id),
                "type": 0,
                "guild_id": str(self.guild_id),
                "name": "news",
                "position": 0,
                "permission_overwrites": [],
                "topic": None,
                "nsfw": False,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
                "flags": 0,
                "default_auto_archive_duration": 1440,
            }
        }

        self.messages: dict[int, dict[str, Any]] = {}
        # Uploaded attachments' bytes by attachment id, and the ids downloaded from the CDN route.
        self.files: dict[int, bytes] = {}
        self.attachment_downloads: list[int] = []
        self.records: list[Record] = []
        self.rejections: list[Rejection] = []
        # Failures tests asked for (see ``fail``), and the requests they failed: not ``problems``.
        self.faults: list[Fault] = []
        self.injected: list[Rejection] = []
        self._gateway_down_until = 0.0
        # Requests the fake could not serve (unknown routes, its own errors): a gap in the fake or a bot bug.
        self.unhandled: list[str] = []
        self.heartbeats: list[Heartbeat] = []
        self.connections: list[GatewayConnection] = []
        self.interactions: dict[int, FakeInteraction] = {}
        # The last synced command list per scope: a guild id, or None for global commands.
        self.synced_commands: dict[int | None, list[dict[str, Any]]] = {}
        # Discord keeps a command's id across re-syncs of the same (scope, name, type).
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._saved_endpoints: tuple[str, yarl.URL] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{attachment_id:\\d+}/{filename}", self._get_attachment)
        for method, path, handler in self._routes():
            app.router.add_route(method, API_PREFIX + path, handler)
        # stop() closes the websockets itself, so nothing is worth the default minute of shutdown grace.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.point_discord_py_here()

    async def stop(self) -> None:
        for connection in self.connections:
            if connection.open:
                await connection.close(1001, "server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._saved_endpoints is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_endpoints
            self._saved_endpoints = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def point_discord_py_here(self) -> None:
        """Send discord.py's REST and gateway traffic here; ``stop()`` restores the previous endpoints."""
        if self._saved_endpoints is None:
            self._saved_endpoints = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            )
        discord.http.Route.BASE = self.base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    @contextlib.asynccontextmanager
    async def running(self, client: discord.Client, *, timeout: float = 10.0) -> AsyncIterator[None]:
        """Run ``client.start()`` until the block ends: enters once the client is ready, closes it on exit.

        Raises whatever ended ``start()`` early (e.g. ``discord.LoginFailure``), before or during the block.
        """
        task = asyncio.create_task(client.start(self.token), name="discord-client")
        try:
            deadline = time.monotonic() + timeout
            # wait_until_ready() cannot be called before login, so poll.
            while not client.is_ready():
                if task.done():
                    task.result()
                    raise RuntimeError("client.start() returned before the client was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client not ready after {timeout}s; {self._summary()}")
                await asyncio.sleep(0.01)
            yield
        finally:
            await client.close()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        # Only reached when the block succeeded: a client whose start() died mid-test must still fail it.
        if task.cancelled():
            raise TimeoutError(f"client.start() did not return within {timeout}s of close()")
        if task.exception() is not None:
            raise RuntimeError("client.start() failed while the test ran") from task.exception()

    # ----------------------------------------------------------------- what tests inject

    def add_member(self, username: str, *, role_ids: Sequence[int] = ()) -> FakeUser:
        """A new guild member. Bots learn of it only from the events that carry it (no GUILD_MEMBER_ADD)."""
        user = FakeUser(self._ids.next(), username, tuple(role_ids))
        self.members[user.id] = user
        return user

    async def send_message(
        self,
        content: str,
        *,
        author: FakeUser | None = None,
        channel_id: int | None = None,
        reply_to: int | None = None,
        mentions: Sequence[FakeUser] | None = None,
        attachments: Mapping[str, bytes] | None = None,
    ) -> int:
        """Dispatch MESSAGE_CREATE for a member's message; returns its id.

        ``mentions`` defaults to the members ``<@id>``-mentioned in ``content`` (as Discord parses them).
        Without the MESSAGE_CONTENT intent the bot gets empty content unless it is mentioned, as on Discord.
        ``attachments`` (file name -> bytes) are uploaded with it and served from this server's CDN route.
        """
        self._live_session()
        channel_id = channel_id or self.channel_id
        if channel_id not in self.channels:
            raise ValueError(f"unknown channel {channel_id}")
        body: dict[str, Any] = {"content": content}
        if reply_to is not None:
            if reply_to not in self.messages:
                raise ValueError(f"unknown message {reply_to}")
            body["message_reference"] = {"message_id": str(reply_to), "channel_id": str(channel_id)}
        message = self._store_new_message(channel_id, author or self.user, body, mentions=mentions)
        for name, data in (attachments or {}).items():
            attachment = self._attachment(name, data)
            message["attachments"].append(attachment)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return int(message["id"])

    async def send_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        member_permissions: int | None = None,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE for a synced chat-input command, as a member's client would.

        ``name`` may name a subcommand: ``"news latest"``. Option values are typed from the synced definition
        (string, integer, boolean, number options). ``member_permissions`` overrides the member's channel
        permissions (``interaction.permissions``); ``guild_permissions`` always follow the member's roles.
        """
        self._live_session()
        command_name, *path = name.split()
        scope, definition = self._synced_command(command_name)
        data: dict[str, Any] = {"id": definition["id"], "name": command_name, "type": 1}
        if scope is not None:
            data["guild_id"] = str(scope)
        built = self._command_options(definition, path, dict(options or {}))
        if built:
            data["options"] = built
        return await self._dispatch_interaction(
            _APP_COMMAND_INTERACTION,
            data,
            user=user,
            channel_id=channel_id,
            member_permissions=member_permissions,
        )

    async def send_component_interaction(
        self,
        message_id: int,
        custom_id: str,
        *,
        values: Sequence[str] | None = None,
        user: FakeUser | None = None,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE for a click on (with ``values``: a choice in) a message's component."""
        self._live_session()
        message = self.messages.get(message_id)
        if message is None:
            raise ValueError(f"unknown message {message_id}")
        component = _find_component(message.get("components") or [], custom_id)
        if component is None:
            raise ValueError(f"message {message_id} has no component with custom_id {custom_id!r}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = list(values)
        return await self._dispatch_interaction(
            _COMPONENT_INTERACTION, data, user=user, channel_id=int(message["channel_id"]), message=message
        )

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int | None = 1,
        code: int | None = None,
        message: str | None = None,
        retry_after: float = 0.5,
    ) -> Fault:
        """Answer matching requests with ``status`` and a Discord-style error body instead of serving them.

        ``path`` is a regular expression for the whole path after ``/api/v10`` (``/channels/\\d+/messages``),
        ``method`` an HTTP method or ``*``. The first matching fault applies; see :class:`Fault`.
        """
        default_code, default_message = _FAULT_DEFAULTS.get(status, (0, f"{status}: injected"))
        fault = Fault(
            method.upper(),
            re.compile(path),
            status,
            default_code if code is None else code,
            default_message if message is None else message,
            times,
            retry_after,
        )
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    async def drop_gateway(self, seconds: float) -> None:
        """A gateway outage: close the live connection (code 1011, as on a server error) and refuse new
        ones (HTTP 503 to the websocket upgrade) for ``seconds``."""
        self._gateway_down_until = time.monotonic() + seconds
        for connection in self.connections:
            if connection.open:
                await connection.close(1011, "gateway outage (injected)")

    @property
    def gateway_down(self) -> bool:
        return time.monotonic() < self._gateway_down_until

    async def reconnect_gateway(self) -> None:
        """Ask the client to reconnect (op 7), as Discord does before maintenance; it should RESUME."""
        session = self._live_session()
        assert session.connection is not None
        await session.connection.send({"op": 7, "d": None})

    # ----------------------------------------------------------------- what tests wait on

    @property
    def problems(self) -> list[str]:
        """Rejected and unhandled requests, for ``assert server.problems == []``."""
        return [f"rejected: {r}" for r in self.rejections] + [f"unhandled: {u}" for u in self.unhandled]

    async def wait_until(
        self, condition: Callable[[], _T | None], *, timeout: float = 10.0, what: str = ""
    ) -> _T:
        """Wait until ``condition()`` returns something truthy, and return it.

        It is re-checked on every change here and at least every 50 ms, so conditions on the client's own
        state (``lambda: bot.errors``) work too.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or condition}; {self._summary()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    async def wait_for(
        self, predicate: Callable[[Record], bool], *, timeout: float = 10.0, after: int = 0
    ) -> Record:
        """The first matching record at index ``after`` or later (``after=len(server.records)``: new ones)."""
        return await self.wait_until(
            lambda: next((r for r in self.records[after:] if predicate(r)), None),
            timeout=timeout,
            what="a record",
        )

    async def wait_for_message(
        self, predicate: Callable[[Record], bool] | None = None, *, timeout: float = 10.0, after: int = 0
    ) -> Record:
        """Like ``wait_for``, among records that delivered message content (see ``Record.is_message``)."""
        return await self.wait_for(
            lambda r: r.is_message and (predicate is None or predicate(r)), timeout=timeout, after=after
        )

    async def wait_for_heartbeats(self, count: int, *, timeout: float = 10.0) -> list[Heartbeat]:
        """Wait until ``count`` heartbeats have been acknowledged; returns them."""

        def acked() -> list[Heartbeat] | None:
            done = [h for h in self.heartbeats if h.acked_at is not None]
            return done[:count] if len(done) >= count else None

        return await self.wait_until(acked, timeout=timeout, what=f"{count} acknowledged heartbeats")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _summary(self) -> str:
        kinds = [f"{r.kind}({r.callback_type})" if r.callback_type else r.kind for r in self.records[-10:]]
        return f"last records: {kinds}; problems: {self.problems}"

    def _record(self, kind: RecordKind, body: Any, **fields: Any) -> Record:
        if fields.get("message") is not None:
            fields["message"] = copy.deepcopy(fields["message"])
        record = Record(seq=len(self.records), kind=kind, at=time.monotonic(), body=body, **fields)
        self.records.append(record)
        self._notify()
        return record

    # ----------------------------------------------------------------- guild data

    def _role(
        self,
        role_id: int,
        name: str,
        permissions: discord.Permissions,
        *,
        position: int,
        bot_id: int | None = None,
    ) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions.value),
            "managed": bot_id is not None,
            "mentionable": False,
            "flags": 0,
            "tags": {"bot_id": str(bot_id)} if bot_id is not None else {},
        }

    def _permissions(self, user: FakeUser) -> int:
        """Guild-level permissions, computed as Discord does (no channel overwrites exist here)."""
        everything = discord.Permissions.all().value
        if user.id == self.owner.id:
            return everything
        value = 0
        for role_id in (self.everyone_role_id, *user.role_ids):
            value |= int(self.roles[role_id]["permissions"])
        return everything if value & discord.Permissions(administrator=True).value else value

    def _member(self, user: FakeUser, *, with_user: bool = True) -> dict[str, Any]:
        member: dict[str, Any] = {
            "roles": [str(r) for r in user.role_ids],
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": self._joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = user.payload()
        return member

    def _guild(self) -> dict[str, Any]:
        members = [self._member(u) for u in self.members.values()]
        return {
            "id": str(self.guild_id),
            "name": "News Club",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner.id),
            "roles": list(self.roles.values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "afk_timeout": 300,
            "afk_channel_id": None,
            "system_channel_id": str(self.channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "application_id": None,
            "joined_at": self._joined_at,
            "large": False,
            "unavailable": False,
            # Equal to len(members), so discord.py sees the guild as chunked and sends no op 8 at startup.
            "member_count": len(members),
            "members": members,
            "channels": [c for c in self.channels.values() if c["type"] == 0],
            "threads": [c for c in self.channels.values() if c["type"] in (11, 12)],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": _APPLICATION_FLAGS,
            "owner": self.owner.payload(),
            "team": None,
            "bot": self.bot_user.payload(),
            "hook": True,
            "redirect_uris": [],
            "tags": [],
            # Non-null would tell discord.py that interactions go to a webhook instead of the gateway.
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
        }

    # ----------------------------------------------------------------- messages

    def _mentions(
        self, content: str, allowed: Mapping[str, Any] | None, replied_author_id: int | None
    ) -> tuple[list[int], list[int], bool]:
        """Who a message pings: (user ids, role ids, everyone), applying ``allowed_mentions`` like Discord."""
        user_ids = [int(u) for u in _USER_MENTION.findall(content) if int(u) in self.members]
        role_ids = [int(r) for r in _ROLE_MENTION.findall(content) if int(r) in self.roles]
        everyone = "@everyone" in content or "@here" in content
        if allowed is None:
            # Without allowed_mentions Discord parses everything and pings the author of a replied-to message.
            if replied_author_id is not None:
                user_ids.append(replied_author_id)
        else:
            parse = allowed.get("parse") or []
            if "users" not in parse:
                listed = {int(u) for u in allowed.get("users") or []}
                user_ids = [u for u in user_ids if u in listed]
            if "roles" not in parse:
                listed = {int(r) for r in allowed.get("roles") or []}
                role_ids = [r for r in role_ids if r in listed]
            everyone = everyone and "everyone" in parse
            if replied_author_id is not None and allowed.get("replied_user"):
                user_ids.append(replied_author_id)
        return list(dict.fromkeys(user_ids)), list(dict.fromkeys(role_ids)), everyone

    def _apply_mentions(
        self,
        message: dict[str, Any],
        allowed: Mapping[str, Any] | None,
        explicit: Sequence[FakeUser] | None = None,
    ) -> None:
        replied_author_id = None
        referenced = message.get("referenced_message")
        if referenced is not None:
            replied_author_id = int(referenced["author"]["id"])
        user_ids, role_ids, everyone = self._mentions(message["content"], allowed, replied_author_id)
        if explicit is not None:
            user_ids = [u.id for u in explicit]
        message["mentions"] = [
            {**self.members[u].payload(), "member": self._member(self.members[u], with_user=False)}
            for u in user_ids
        ]
        message["mention_roles"] = [str(r) for r in role_ids]
        message["mention_everyone"] = everyone

    def _store_new_message(
        self,
        channel_id: int,
        author: FakeUser,
        body: Mapping[str, Any],
        *,
        files: Sequence[str] = (),
        interaction: FakeInteraction | None = None,
        mentions: Sequence[FakeUser] | None = None,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """Create and store the message object Discord would return for ``body``."""
        message_id = message_id or self._ids.next()
        reference = body.get("message_reference")
        referenced = self.messages.get(int(reference["message_id"])) if reference else None
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(self.guild_id),
            "author": author.payload(),
            "content": str(body.get("content") or ""),
            "timestamp": _timestamp(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "attachments": [self._attachment(name) for name in files],
            "embeds": [{"type": "rich", **e} for e in body.get("embeds") or []],
            "components": body.get("components") or [],
            "reactions": [],
            "pinned": False,
            "type": 19 if referenced is not None else 0,
            "flags": int(body.get("flags") or 0),
        }
        if reference:
            message["message_reference"] = {"type": 0, "channel_id": str(channel_id), **reference}
            message["referenced_message"] = copy.deepcopy(referenced)
        if interaction is not None:
            if interaction.type == _APP_COMMAND_INTERACTION:
                message["type"] = 20  # CHAT_INPUT_COMMAND
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            message["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.payload(),
                "authorizing_integration_owners": {"0": str(self.guild_id)},
            }
        self._apply_mentions(message, body.get("allowed_mentions"), mentions)
        self.messages[message_id] = message
        channel = self.channels[channel_id]
        channel["last_message_id"] = str(message_id)
        if "message_count" in channel:
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        return message

    def _attachment(self, filename: str, data: bytes = b"") -> dict[str, Any]:
        attachment_id = self._ids.next()
        url = f"http://127.0.0.1:{self.port}/attachments/{attachment_id}/{filename}"
        self.files[attachment_id] = data
        # Discord's CDN links carry a signature that expires; clients must not rely on the query.
        signed = f"{url}?ex=0&is=0&hm={secrets.token_hex(8)}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": signed,
            "proxy_url": signed,
        }

    async def _get_attachment(self, request: web.Request) -> web.Response:
        data = self.files.get(int(request.match_info["attachment_id"]))
        if data is None:
            raise web.HTTPNotFound()
        self.attachment_downloads.append(int(request.match_info["attachment_id"]))
        return web.Response(body=data, content_type="application/octet-stream")

    def _edit_message(self, message: dict[str, Any], body: Mapping[str, Any], files: Sequence[str]) -> None:
        """Apply an edit's partial body, then check the result is still a sendable message."""
        if "content" in body:
            message["content"] = str(body["content"] or "")
        if "components" in body:
            message["components"] = body["components"] or []
        if "flags" in body:
            message["flags"] = int(body["flags"] or 0)
        if "embeds" in body:
            message["embeds"] = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "attachments" in body or files:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
            message["attachments"] += [self._attachment(name) for name in files]
        _check_not_empty(message)
        message["edited_timestamp"] = _timestamp()
        if "content" in body or "allowed_mentions" in body:
            self._apply_mentions(message, body.get("allowed_mentions"))

    def _validate_new_message(self, body: Mapping[str, Any], files: Sequence[str]) -> None:
        errors = _FormErrors()
        _check_message_fields(body, errors)
        reference = body.get("message_reference")
        if (
            reference
            and int(reference["message_id"]) not in self.messages
            and reference.get("fail_if_not_exists", True)
        ):
            errors.add(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        errors.raise_if_any()
        _check_not_empty({**body, "attachments": list(files)})

    async def _dispatch_message(self, event: str, message: dict[str, Any]) -> None:
        """MESSAGE_CREATE/UPDATE as the gateway sends them: with the author's member, gated by intents."""
        if message["flags"] & _FLAG_EPHEMERAL:
            return  # only the invoking user's client ever sees an ephemeral message
        session = self._session
        if session is None:
            return
        data = copy.deepcopy(message)
        author = self.members.get(int(message["author"]["id"]))
        if author is not None:
            data["member"] = self._member(author, with_user=False)
        mentioned = any(int(u["id"]) == self.bot_user.id for u in message["mentions"])
        if not session.intents & _INTENT_MESSAGE_CONTENT and author != self.bot_user and not mentioned:
            data.update(content="", embeds=[], attachments=[], components=[])
        await self._dispatch(event, data, intent=_INTENT_GUILD_MESSAGES)

    # ----------------------------------------------------------------- interactions

    def _synced_command(self, name: str) -> tuple[int | None, dict[str, Any]]:
        # A guild command shadows a global one of the same name in the client's command picker.
        for scope in (self.guild_id, None):
            for command in self.synced_commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return scope, command
        raise LookupError(f"no chat-input command {name!r} was synced; synced: {self.synced_commands}")

    def _command_options(
        self, definition: Mapping[str, Any], path: Sequence[str], values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The interaction's ``options`` tree: subcommand nesting along ``path``, then typed values."""
        declared = {o["name"]: o for o in definition.get("options") or []}
        if path:
            sub = declared.get(path[0])
            if sub is None or sub["type"] not in (_OPTION_SUBCOMMAND, _OPTION_SUBCOMMAND_GROUP):
                raise ValueError(f"{definition['name']!r} has no subcommand {path[0]!r}")
            return [
                {
                    "name": sub["name"],
                    "type": sub["type"],
                    "options": self._command_options(sub, path[1:], values),
                }
            ]
        unknown = set(values) - set(declared)
        if unknown:
            raise ValueError(f"{definition['name']!r} has no options {sorted(unknown)}")
        missing = [n for n, o in declared.items() if o.get("required") and n not in values]
        if missing:
            raise ValueError(f"{definition['name']!r} requires options {missing}")
        built = []
        for option_name, value in values.items():
            option = declared[option_name]
            if option["type"] not in _PLAIN_OPTION_TYPES:
                raise NotImplementedError(
                    f"option type {option['type']} needs resolved data this fake does not build"
                )
            choices = [c["value"] for c in option.get("choices") or []]
            if choices and value not in choices:
                raise ValueError(f"{value!r} is not one of the choices {choices} of {option_name!r}")
            built.append({"name": option_name, "type": option["type"], "value": value})
        return built

    async def _dispatch_interaction(
        self,
        interaction_type: int,
        data: dict[str, Any],
        *,
        user: FakeUser | None,
        channel_id: int | None,
        member_permissions: int | None = None,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        user = user or self.user
        channel_id = channel_id or self.channel_id
        if channel_id not in self.channels:
            raise ValueError(f"unknown channel {channel_id}")
        interaction = FakeInteraction(
            id=self._ids.next(),
            token=secrets.token_urlsafe(48),
            type=interaction_type,
            channel_id=channel_id,
            user=user,
            dispatched_at=time.monotonic(),
            message_id=int(message["id"]) if message is not None else None,
        )
        self.interactions[interaction.id] = interaction
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "data": data,
            "guild_id": str(self.guild_id),
            "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": copy.deepcopy(self.channels[channel_id]),
            "member": {
                **self._member(user),
                "permissions": str(
                    member_permissions if member_permissions is not None else self._permissions(user)
                ),
            },
            "token": interaction.token,
            "version": 1,
            "app_permissions": str(self._permissions(self.bot_user)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,  # GUILD
            "attachment_size_limit": _ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        await self._dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _interaction_for_webhook(self, request: web.Request) -> FakeInteraction:
        """The interaction whose token authenticates a follow-up webhook route."""
        token = request.match_info["token"]
        if int(request.match_info["app_id"]) == self.application_id:
            for interaction in self.interactions.values():
                if interaction.token == token:
                    return interaction
        raise _ApiError(404, 10015, "Unknown Webhook")

    def _webhook_message(self, request: web.Request, interaction: FakeInteraction) -> dict[str, Any]:
        raw_id = request.match_info["message_id"]
        message_id = interaction.original_message_id if raw_id == "@original" else int(raw_id)
        message = self.messages.get(message_id) if message_id is not None else None
        if message is None:
            raise _ApiError(404, 10008, "Unknown Message")
        return message

    # ----------------------------------------------------------------- gateway

    def _live_session(self) -> _Session:
        if self._session is None:
            raise RuntimeError("no client has identified on the gateway yet (is the bot running?)")
        return self._session

    async def _dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> None:
        session = self._session
        if session is None:
            return
        if intent is not None and not session.intents & intent:
            _log.info("not dispatching %s: the client did not ask for intent %#x", event, intent)
            return
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        if session.connection is not None and session.connection.open:
            # A frame lost to a closing socket is replayed when the client resumes.
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.connection.send(frame)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="gateway outage (injected)")
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0)
        await ws.prepare(request)
        connection = GatewayConnection(
            ws, compress=request.query.get("compress"), encoding=request.query.get("encoding", "json")
        )
        self.connections.append(connection)
        try:
            if connection.encoding != "json":
                self.unhandled.append(f"gateway encoding {connection.encoding!r}")
                await connection.close(4002, "only json encoding is supported")
                return ws
            await connection.send(
                {"op": 10, "d": {"heartbeat_interval": round(self.heartbeat_interval * 1000)}}
            )
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    self.unhandled.append(f"gateway frame of type {frame.type!r}")
                    continue
                await self._on_gateway_payload(connection, json.loads(frame.data))
        except ConnectionError:
            _log.debug("gateway connection dropped", exc_info=True)
        except Exception as error:
            # A gap in the fake: make the test see it, not just the log.
            _log.exception("fake Discord gateway failed")
            self.unhandled.append(f"gateway: {error!r}")
            await ws.close(code=4000)
        finally:
            connection.closed_at = time.monotonic()
            if self._session is not None and self._session.connection is connection:
                self._session.connection = None
            self._notify()
        return ws

    async def _on_gateway_payload(self, connection: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data: Any = payload.get("d")
        if op == 1:
            heartbeat = Heartbeat(received_at=time.monotonic(), sequence=data)
            self.heartbeats.append(heartbeat)
            await connection.send({"op": 11})
            heartbeat.acked_at = time.monotonic()
            self._notify()
        elif op == 2:
            await self._identify(connection, data)
        elif op == 6:
            await self._resume(connection, data)
        elif op == 8:
            # Every member matches: the guild is small enough that no query narrows what a test needs.
            chunk = {
                "guild_id": str(self.guild_id),
                "members": [self._member(u) for u in self.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "nonce": data.get("nonce"),
            }
            await self._dispatch("GUILD_MEMBERS_CHUNK", chunk)
        elif op in (3, 4):
            pass  # presence and voice state updates change nothing here
        else:
            self.unhandled.append(f"gateway op {op}")
            await connection.close(4001, "Unknown opcode.")

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        connection.identify = data
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        session = _Session(
            id=secrets.token_hex(16), intents=int(data.get("intents", 0)), shard=data.get("shard")
        )
        session.connection = connection
        self._sessions[session.id] = session
        self._session = session
        ready: dict[str, Any] = {
            "v": 10,
            "user": {
                **self.bot_user.payload(),
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
                "email": None,
            },
            # As on Discord, READY lists guilds as unavailable and a GUILD_CREATE for each follows.
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": _APPLICATION_FLAGS},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch("READY", ready)
        await self._dispatch("GUILD_CREATE", self._guild(), intent=_INTENT_GUILDS)
        self._notify()

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = self._sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != self.token:
            await connection.send({"op": 9, "d": False})  # not resumable: the client identifies afresh
            return
        connection.resumed = True
        session.connection = connection
        self._session = session
        last_seen = data.get("seq") or 0
        for frame in session.events:
            if frame["s"] > last_seen:
                await connection.send(frame)
        await self._dispatch("RESUMED", {"_trace": ["fake-discord"]})
        self._notify()

    # ----------------------------------------------------------------- REST plumbing

    def _routes(self) -> list[tuple[str, str, _Handler]]:
        channel = "/channels/{channel_id:\\d+}"
        message = channel + "/messages/{message_id:\\d+}"
        reaction = message + "/reactions/{emoji}/@me"
        webhook = "/webhooks/{app_id:\\d+}/{token}"
        return [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/applications/{app_id:\\d+}/commands", self._get_commands),
            ("PUT", "/applications/{app_id:\\d+}/commands", self._put_commands),
            ("GET", "/applications/{app_id:\\d+}/guilds/{guild_id:\\d+}/commands", self._get_commands),
            ("PUT", "/applications/{app_id:\\d+}/guilds/{guild_id:\\d+}/commands", self._put_commands),
            ("GET", channel, self._get_channel),
            ("GET", channel + "/messages", self._get_history),
            ("POST", channel + "/messages", self._post_message),
            ("GET", message, self._get_message),
            ("PATCH", message, self._patch_message),
            ("DELETE", message, self._delete_message),
            ("POST", message + "/threads", self._post_thread_from_message),
            ("POST", channel + "/threads", self._post_thread),
            ("POST", channel + "/typing", self._post_typing),
            ("PUT", reaction, functools.partial(self._reaction, "reaction_add")),
            (
                "DELETE",
                reaction,
                functools.partial(self._reaction, "reaction_remove"),
            ),
            ("POST", "/interactions/{interaction_id:\\d+}/{token}/callback", self._post_callback),
            ("POST", webhook, self._post_followup),
            ("GET", webhook + "/messages/{message_id}", self._get_webhook_message),
            ("PATCH", webhook + "/messages/{message_id}", self._patch_webhook_message),
            ("DELETE", webhook + "/messages/{message_id}", self._delete_webhook_message),
        ]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        fault = next((f for f in self.faults if f.matches(request.method, path)), None)
        if fault is not None and request.path.startswith(API_PREFIX):
            fault.hits += 1
            body = await request.read() if request.can_read_body else b""
            self.injected.append(
                Rejection(
                    time.monotonic(),
                    request.method,
                    path,
                    fault.status,
                    {"code": fault.code, "message": fault.message},
                    body.decode("utf-8", "replace"),
                )
            )
            self._notify()
            return fault.response()
        try:
            # Interaction callbacks and follow-ups authenticate with the interaction token, not the bot's.
            needs_auth = request.path.startswith(API_PREFIX) and not path.startswith(
                ("/interactions/", "/webhooks/")
            )
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, 0, "401: Unauthorized")
            return await handler(request)
        except _ApiError as error:
            body = request.get(_JSON_BODY)
            self.rejections.append(
                Rejection(time.monotonic(), request.method, path, error.status, error.body, body)
            )
            self._notify()
            return _json(error.body, error.status)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as error:
            _log.warning("fake Discord has no route for %s %s", request.method, request.path_qs)
            self.unhandled.append(f"{request.method} {request.path_qs}")
            self._notify()
            return _json({"code": 0, "message": f"{error.status}: {error.reason}"}, error.status)
        except Exception as error:
            # Not 500: discord.py retries 5xx with back-off, which would stall the test for ~25 s.
            _log.exception("fake Discord failed on %s %s", request.method, request.path_qs)
            self.unhandled.append(f"{request.method} {request.path_qs}: {error!r}")
            self._notify()
            return _json({"code": 0, "message": f"fake Discord error: {error!r}"}, 400)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[str]]:
        """The request's JSON and the names of any uploaded files (discord.py sends files as multipart)."""
        files: list[str] = []
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body = json.loads(str(form.get("payload_json") or "{}"))
            files = [part.filename for part in form.values() if isinstance(part, web.FileField)]
        elif request.can_read_body:
            body = await request.json()
        else:
            body = {}
        request[_JSON_BODY] = body
        return body, files

    def _channel(self, request: web.Request) -> int:
        channel_id = int(request.match_info["channel_id"])
        if channel_id not in self.channels:
            raise _ApiError(404, 10003, "Unknown Channel")
        return channel_id

    def _message(self, request: web.Request) -> dict[str, Any]:
        channel_id = self._channel(request)
        message = self.messages.get(int(request.match_info["message_id"]))
        if message is None or int(message["channel_id"]) != channel_id:
            raise _ApiError(404, 10008, "Unknown Message")
        return message

    # ----------------------------------------------------------------- REST: session and commands

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json({**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json(self._application())

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    def _command_scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None and int(guild_id) != self.guild_id:
            raise _ApiError(403, 50001, "Missing Access")
        return int(guild_id) if guild_id is not None else None

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.synced_commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body, _ = await self._read_body(request)
        commands = []
        for definition in body:
            key = (scope, definition["name"], definition.get("type", 1))
            command_id = self._command_ids.setdefault(key, self._ids.next())
            command = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **definition,
                "id": str(command_id),
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
            }
            if scope is not None:
                command["guild_id"] = str(scope)
            commands.append(command)
        self.synced_commands[scope] = commands
        self._record("commands_sync", body, channel_id=scope)
        return _json(commands)

    # ----------------------------------------------------------------- REST: channels and messages

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(self.channels[self._channel(request)])

    async def _get_history(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        limit = min(int(request.query.get("limit", 50)), 100)
        before = int(request.query.get("before", 1 << 63))
        after = int(request.query.get("after", 0))
        found = [
            m
            for message_id, m in sorted(self.messages.items(), reverse=True)
            if int(m["channel_id"]) == channel_id
            and after < message_id < before
            and not m["flags"] & _FLAG_EPHEMERAL
        ]
        # With only "after", Discord returns the oldest messages after it (still newest first).
        return _json(
            found[-limit:] if "after" in request.query and "before" not in request.query else found[:limit]
        )

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        body, files = await self._read_body(request)
        self._validate_new_message(body, files)
        message = self._store_new_message(channel_id, self.bot_user, body, files=files)
        self._record(
            "message",
            body,
            channel_id=channel_id,
            message_id=int(message["id"]),
            files=tuple(files),
            message=message,
        )
        await self._dispatch_message("MESSAGE_CREATE", message)
        return _json(message)

    async def _get_message(self, request: web.Request) -> web.Response:
        return _json(self._message(request))

    async def _patch_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        body, files = await self._read_body(request)
        if int(message["author"]["id"]) != self.bot_user.id:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        errors = _FormErrors()
        _check_message_fields(body, errors)
        errors.raise_if_any()
        edited = copy.deepcopy(message)
        self._edit_message(edited, body, files)
        message.update(edited)
        self._record(
            "message_edit",
            body,
            channel_id=int(message["channel_id"]),
            message_id=int(message["id"]),
            files=tuple(files),
            message=message,
        )
        await self._dispatch_message("MESSAGE_UPDATE", message)
        return _json(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        if int(message["author"]["id"]) != self.bot_user.id:
            raise _ApiError(403, 50013, "Missing Permissions")  # the bot's role lacks MANAGE_MESSAGES
        await self._delete(message, "message_delete", None)
        return web.Response(status=204)

    async def _delete(self, message: dict[str, Any], kind: RecordKind, interaction_id: int | None) -> None:
        message_id = int(message["id"])
        del self.messages[message_id]
        self._record(
            kind,
            None,
            channel_id=int(message["channel_id"]),
            message_id=message_id,
            interaction_id=interaction_id,
            message=message,
        )
        if not message["flags"] & _FLAG_EPHEMERAL:
            data = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": str(self.guild_id)}
            await self._dispatch("MESSAGE_DELETE", data, intent=_INTENT_GUILD_MESSAGES)

    async def _post_typing(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        self._record("typing", None, channel_id=channel_id)
        return web.Response(status=204)

    async def _reaction(self, kind: RecordKind, request: web.Request) -> web.Response:
        message = self._message(request)
        self._record(
            kind,
            {"emoji": request.match_info["emoji"]},
            channel_id=int(message["channel_id"]),
            message_id=int(message["id"]),
        )
        return web.Response(status=204)

    # ----------------------------------------------------------------- REST: threads

    async def _post_thread_from_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        body, _ = await self._read_body(request)
        # A thread started from a message takes the message's id, so there can be only one.
        if int(message["id"]) in self.channels:
            raise _ApiError(400, 160004, "A thread has already been created for this message")
        return await self._create_thread(int(message["channel_id"]), body, int(message["id"]), thread_type=11)

    async def _post_thread(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        body, _ = await self._read_body(request)
        return await self._create_thread(channel_id, body, None, thread_type=int(body.get("type") or 12))

    async def _create_thread(
        self, parent_id: int, body: Mapping[str, Any], message_id: int | None, *, thread_type: int
    ) -> web.Response:
        if self.channels[parent_id]["type"] != 0:
            raise _ApiError(400, 50024, "Cannot execute action on this channel type")
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            errors = _FormErrors()
            errors.add(("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            errors.raise_if_any()
        thread_id = message_id or self._ids.next()
        now = _timestamp()
        thread = {
            "id": str(thread_id),
            "type": thread_type,
            "guild_id": str(self.guild_id),
            "parent_id": str(parent_id),
            "owner_id": str(self.bot_user.id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": int(body.get("rate_limit_per_user") or 0),
            "message_count": 0,
            "total_message_sent": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": int(body.get("auto_archive_duration") or 4320),
                "archive_timestamp": now,
                "locked": False,
                "invitable": bool(body.get("invitable", True)),
                "create_timestamp": now,
            },
            "member": {
                "id": str(thread_id),
                "user_id": str(self.bot_user.id),
                "join_timestamp": now,
                "flags": 1,
            },
        }
        self.channels[thread_id] = thread
        self._record("thread_create", dict(body), channel_id=thread_id, message_id=message_id)
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True}, intent=_INTENT_GUILDS)
        return _json(thread, 201)

    # ----------------------------------------------------------------- REST: interaction responses

    async def _post_callback(self, request: web.Request) -> web.Response:
        body, files = await self._read_body(request)
        interaction = self.interactions.get(int(request.match_info["interaction_id"]))
        now = time.monotonic()
        if (
            interaction is None
            or interaction.token != request.match_info["token"]
            or now - interaction.dispatched_at > self.interaction_deadline
        ):
            raise _ApiError(404, 10062, "Unknown interaction")
        if interaction.callback_type is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        callback_type = CallbackType(body["type"])
        data = body.get("data") or {}
        errors = _FormErrors()
        _check_message_fields(data, errors, ("data",))
        errors.raise_if_any()

        message: dict[str, Any] | None = None
        if callback_type is CallbackType.CHANNEL_MESSAGE:
            _check_not_empty({**data, "attachments": files})
            message = self._store_new_message(
                interaction.channel_id, self.bot_user, data, files=files, interaction=interaction
            )
        elif callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE:
            # Discord shows a "thinking" message (LOADING) that the first follow-up or @original edit fills.
            flags = _FLAG_LOADING | (int(data.get("flags") or 0) & _FLAG_EPHEMERAL)
            message = self._store_new_message(
                interaction.channel_id, self.bot_user, {"flags": flags}, interaction=interaction
            )
        elif callback_type in (CallbackType.UPDATE_MESSAGE, CallbackType.DEFERRED_UPDATE_MESSAGE):
            if interaction.message_id is None:
                raise _ApiError(400, 40004, "Interaction response type is not valid for this interaction")
            interaction.original_message_id = interaction.message_id
            if callback_type is CallbackType.UPDATE_MESSAGE:
                message = self.messages[interaction.message_id]
                edited = copy.deepcopy(message)
                self._edit_message(edited, data, files)
                message.update(edited)

        interaction.callback_type = callback_type
        interaction.acked_at = now
        if message is not None and interaction.original_message_id is None:
            interaction.original_message_id = int(message["id"])
        self._record(
            "interaction_callback",
            body,
            channel_id=interaction.channel_id,
            message_id=int(message["id"]) if message is not None else interaction.original_message_id,
            interaction_id=interaction.id,
            callback_type=callback_type,
            files=tuple(files),
            message=message,
        )
        if message is not None:
            event = "MESSAGE_UPDATE" if callback_type is CallbackType.UPDATE_MESSAGE else "MESSAGE_CREATE"
            await self._dispatch_message(event, message)

        # The shape of ``?with_response=1``: the interaction's state plus what the callback created.
        summary: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "response_message_loading": callback_type is CallbackType.DEFERRED_CHANNEL_MESSAGE,
            "response_message_ephemeral": bool(message is not None and message["flags"] & _FLAG_EPHEMERAL),
        }
        if message is not None:
            summary["response_message_id"] = message["id"]
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        resource: dict[str, Any] = {"type": int(callback_type)}
        if message is not None and callback_type in _MESSAGE_CALLBACKS:
            resource["message"] = message
        return _json({"interaction": summary, "resource": resource})

    async def _post_followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for_webhook(request)
        body, files = await self._read_body(request)
        if interaction.callback_type is None:
            raise _ApiError(404, 10015, "Unknown Webhook")  # no follow-ups before the initial response
        self._validate_new_message(body, files)
        original = self.messages.get(interaction.original_message_id or 0)
        if original is not None and original["flags"] & _FLAG_LOADING:
            # Documented Discord behaviour: the first follow-up after a defer edits the "thinking" message,
            # which keeps the defer's ephemerality whatever the follow-up's flags say.
            edited = copy.deepcopy(original)
            flags = (original["flags"] & _FLAG_EPHEMERAL) | (int(body.get("flags") or 0) & ~_FLAG_EPHEMERAL)
            self._edit_message(edited, {**body, "flags": flags}, files)
            original.update(edited)
            message, event = original, "MESSAGE_UPDATE"
        else:
            message = self._store_new_message(
                interaction.channel_id, self.bot_user, body, files=files, interaction=interaction
            )
            event = "MESSAGE_CREATE"
        self._record(
            "followup",
            body,
            channel_id=interaction.channel_id,
            message_id=int(message["id"]),
            interaction_id=interaction.id,
            files=tuple(files),
            message=message,
        )
        await self._dispatch_message(event, message)
        if request.query.get("wait") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json(message)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for_webhook(request)
        return _json(self._webhook_message(request, interaction))

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for_webhook(request)
        message = self._webhook_message(request, interaction)
        body, files = await self._read_body(request)
        errors = _FormErrors()
        _check_message_fields(body, errors)
        errors.raise_if_any()
        edited = copy.deepcopy(message)
        # Editing the "thinking" message turns it into the real response.
        self._edit_message(
            edited, {**body, "flags": (edited["flags"] & ~_FLAG_LOADING) | int(body.get("flags") or 0)}, files
        )
        message.update(edited)
        kind: RecordKind = (
            "original_edit" if request.match_info["message_id"] == "@original" else "followup_edit"
        )
        self._record(
            kind,
            body,
            channel_id=interaction.channel_id,
            message_id=int(message["id"]),
            interaction_id=interaction.id,
            files=tuple(files),
            message=message,
        )
        await self._dispatch_message("MESSAGE_UPDATE", message)
        return _json(message)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for_webhook(request)
        message = self._webhook_message(request, interaction)
        kind: RecordKind = (
            "original_delete" if request.match_info["message_id"] == "@original" else "followup_delete"
        )
        await self._delete(message, kind, interaction.id)
        return web.Response(status=204)
