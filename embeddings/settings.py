"""One typed Settings object: defaults <- config/newsbot.toml <- NEWSBOT_* environment variables.

The TOML file groups keys in sections for readers; every key name is unique, so the sections are
flattened into one object. Each field can be overridden by ``NEWSBOT_<FIELD>`` (``NEWSBOT_TOP_K=8``).
Secrets such as the Discord token are never settings: they are read from the environment where used.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "newsbot.toml"
SAMPLES_DIR = PROJECT_ROOT / "samples"


class SettingsError(ValueError):
    """A setting that cannot be used, with where it came from."""


@dataclass(frozen=True)
class Settings:
    # store
    store: Path = Path("data/store")
    # model
    model: str = "all-MiniLM-L6-v2"
    backend: str = "onnx-int8"
    device: str = "auto"
    batch_size: int = 32
    # chunking
    chunk_tokens: int = 200
    overlap_sentences: int = 1
    max_file_mb: float = 20.0
    # retrieval
    top_k: int = 5
    per_article: int = 2
    fusion: str = "rrf"
    rrf_k: int = 10
    dense_weight: float = 1.0
    keyword_weight: float = 2.0
    index: str = "auto"
    search_threads: int = 1
    # answer
    abstain_threshold: float = 0.73
    # the reader (embeddings/reader.py): choose the sentence and abstain by its probability
    reader: bool = True
    reader_sentences: int = 6
    reader_stop: float = 4.0
    hopeless_sentences: int = 2
    reader_threshold: float = 0.0
    reader_abstain_weight: float = 0.3
    pair_margin: float = 4.0
    # show the reader's answer words inside the quote (bold in Discord) at this probability; > 1: never
    answer_words: float = 0.5
    max_question_chars: int = 1000
    # read a misspelt word as the stored passages spell it ("Neveda" -> "Nevada"; spelling.py)
    spelling: bool = True
    # discord
    guild_id: int | None = None
    answer_channels: tuple[int, ...] = ()
    reply_in_thread: bool = False
    cooldown_seconds: float = 5.0
    cooldown_questions: int = 3
    connect_retry_seconds: float = 300.0
    # conversations (follow-up questions)
    conversation_turns: int = 4
    conversation_minutes: float = 30.0
    # articles shared in Discord
    article_channels: tuple[int, ...] = ()
    allow_private_urls: bool = False
    trusted_url_hosts: tuple[str, ...] = ()
    fetch_max_mb: float = 5.0
    fetch_timeout_seconds: float = 15.0
    share_user_limit: int = 5
    share_guild_limit: int = 30
    share_window_seconds: float = 60.0
    # arrivals
    article_dirs: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    watch: bool = False
    feed_poll_seconds: float = 600.0
    refresh_seconds: float = 2.0

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def default_store(self) -> bool:
        """Whether the store is the default one, the only store created on first use: one named
        elsewhere (--store, NEWSBOT_STORE, the settings file) that does not exist is most likely a typo."""
        return Path(self.store) == Settings.store


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


def _coerce(name: str, value: Any, where: str) -> Any:
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(item(str(v).strip()) for v in items if str(v).strip())
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is Path:
            return Path(value).expanduser()
        if hint is float and isinstance(value, int | float | str):
            return float(value)
        if hint is int and isinstance(value, int | str) and not isinstance(value, bool):
            return int(value)
        if hint is str and isinstance(value, str):
            return value
    except ValueError as err:
        raise SettingsError(f"{where}: {name} = {value!r}: {err}") from None
    raise SettingsError(f"{where}: {name} = {value!r}: expected {getattr(hint, '__name__', hint)}")


def _flatten(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, where))
        elif key in _FIELDS:
            flat[key] = value
        else:
            raise SettingsError(f"{where}: unknown setting {key!r}")
    return flat


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read settings: defaults, then the TOML file, then NEWSBOT_* variables, then ``overrides``."""
    env = os.environ if env is None else env
    path = Path(env.get("NEWSBOT_CONFIG", DEFAULT_CONFIG)) if path is None else path
    values: dict[str, Any] = {}
    if path.exists():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise SettingsError(f"{path}: {err}") from None
        values.update({k: _coerce(k, v, str(path)) for k, v in _flatten(table, str(path)).items()})
    for name in _FIELDS:
        key = f"NEWSBOT_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key], key)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
