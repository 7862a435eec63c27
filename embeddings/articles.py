"""Article + loaders by file type: plain text, Markdown, HTML, JSON and JSON Lines.

Errors are values here: every file or record that cannot become an Article comes back as a
``Skip(source, reason)`` with a one-line reason, and loading goes on. Nothing in this module raises
for bad input; an exception means a bug.

Ids are stable across runs: a file's id is its absolute resolved path, a JSON record's id is its own
``id`` field, else ``"<path>#<n>"`` (n is the line number in JSONL, the list index in JSON).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from embeddings.records import Article, Skip

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Article",
    "Skip",
    "article_from_html",
    "discover_files",
    "load_paths",
    "make_article",
    "normalized_hash",
    "source_path",
]

TEXT_SUFFIXES = frozenset({".txt"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
JSON_SUFFIXES = frozenset({".json"})
JSONL_SUFFIXES = frozenset({".jsonl"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES

_SUFFIX_LIST = ", ".join(sorted(SUPPORTED_SUFFIXES))
_MIB = 1024 * 1024
# A "title" longer than this is really a paragraph: the file simply has no title line.
_MAX_TITLE_CHARS = 300
# Bylines sit right under the headline; looking further down would misread body sentences.
_BYLINE_WINDOW = 3
_MAX_BYLINE_CHARS = 120

Loaded = Article | Skip


# --------------------------------------------------------------------------- records and hashes


def make_article(
    *,
    id: str,
    title: str,
    text: str,
    author: str = "",
    published: str = "",
    source: str = "",
    url: str = "",
) -> Article:
    """Build an Article with normalised text and its content hash; every loader goes through here.

    The hash is taken after normalisation so the same story read from a .txt file and from a JSON
    record (or saved with CRLF line endings) gets the same ``content_hash``.
    """
    title, text = _one_line(title), _normalize_text(text)
    return Article(
        id=id,
        title=title,
        author=_one_line(author),
        published=_one_line(published),
        source=source,
        text=text,
        content_hash=_sha256(f"{title}\n{text}"),
        url=url.strip(),
    )


def normalized_hash(text: str) -> str:
    """sha256 of ``text`` lowercased with whitespace runs collapsed: the same story from two places."""
    return _sha256(" ".join(text.lower().split()))


def source_path(source: str) -> Path | None:
    """The file an ``Article.source`` or ``Skip.source`` points at (``#n`` record suffix removed).

    None for web sources. Used to prune articles whose file has gone.
    """
    if source.startswith(("http://", "https://")):
        return None
    head, sep, tail = source.rpartition("#")
    return Path(head if sep and tail.isdigit() else source)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _normalize_text(text: str) -> str:
    r"""\n line endings, no trailing spaces, paragraphs separated by exactly one blank line.

    Offsets into the stored text are what chunks cite, so this runs once, before hashing.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --------------------------------------------------------------------------- finding files


def discover_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skip]]:
    """Loadable files under ``paths`` (resolved, de-duplicated, in load order) and the paths that failed."""
    files: list[Path] = []
    skips: list[Skip] = []
    for item in _discover(paths):
        if isinstance(item, Path):
            files.append(item)
        else:
            skips.append(item)
    return files, skips


def _discover(paths: Iterable[str | Path]) -> Iterator[Path | Skip]:
    if isinstance(paths, str | Path):
        paths = [paths]  # a lone str is an Iterable[str] too: without this it would load one path per letter
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            resolved = path.resolve()
            info = resolved.stat()
        except FileNotFoundError:
            yield Skip(str(path.absolute()), "no such file or directory")
            continue
        except PermissionError:
            yield Skip(str(path.absolute()), "permission denied")
            continue
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop before Python 3.13
            yield Skip(str(path.absolute()), f"cannot read path ({exc})")
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _discover_dir(resolved, seen)
        elif resolved.suffix.lower() not in SUPPORTED_SUFFIXES:
            yield Skip(
                str(resolved), f"unsupported file type {resolved.suffix or '(none)'!r} ({_SUFFIX_LIST})"
            )
        elif resolved not in seen:
            seen.add(resolved)
            yield resolved


def _discover_dir(root: Path, seen: set[Path]) -> Iterator[Path | Skip]:
    found_any = False
    for item in _walk(root, set()):
        if isinstance(item, Skip):
            yield item
            continue
        found_any = True
        if item not in seen:
            seen.add(item)
            yield item
    if not found_any:
        yield Skip(str(root), f"no loadable files in folder ({_SUFFIX_LIST})")


def _walk(folder: Path, visited: set[Path]) -> Iterator[Path | Skip]:
    """Supported files under ``folder``, sorted by name at each level; hidden entries are ignored.

    Symlinked folders are followed, but each real folder only once, so a link loop cannot recurse.
    """
    if folder in visited:
        return
    visited.add(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except PermissionError:
        yield Skip(str(folder), "permission denied")
        return
    except OSError as exc:
        yield Skip(str(folder), f"cannot list folder ({exc.strerror or exc})")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir():
                yield from _walk(path.resolve(), visited)
            elif entry.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
                yield path.resolve()
        except (OSError, RuntimeError) as exc:
            yield Skip(str(path), f"cannot read ({exc})")


# --------------------------------------------------------------------------- loading


def load_paths(paths: Iterable[str | Path], max_file_mb: float = 20.0) -> Iterator[Article | Skip]:
    """Articles from files and folders (recursively), or a Skip for each thing that could not load.

    Folders only contribute files with a supported suffix; a file named explicitly with another
    suffix is a Skip. Ids repeated across the loaded files (two JSON records with the same ``id``)
    are a Skip too, so callers can key articles by id.
    """
    max_bytes = int(max_file_mb * _MIB)
    first_source: dict[str, str] = {}
    for item in _discover(paths):
        if isinstance(item, Skip):
            yield item
            continue
        for loaded in _load_file(item, max_bytes):
            if isinstance(loaded, Article):
                earlier = first_source.setdefault(loaded.id, loaded.source)
                if earlier != loaded.source:
                    yield Skip(loaded.source, f"duplicate id {loaded.id!r} (already loaded from {earlier})")
                    continue
            yield loaded


def _load_file(path: Path, max_bytes: int) -> Iterator[Loaded]:
    data = _read_bytes(path, max_bytes)
    if isinstance(data, Skip):
        yield data
        return
    yield from _load_data(path, data)


def load_bytes(data: bytes, name: str) -> Iterator[Loaded]:
    """Articles from content that did not come from a file here (a fetched page, an attachment):
    read as the file ``name`` would be, by its suffix. The ids and sources are ``name``-based: callers
    that know better (a URL, a guild's item id) replace them."""
    if not data.strip():
        yield Skip(name, "empty (only whitespace)")
        return
    nul = data.find(b"\x00")
    if nul >= 0 and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        yield Skip(name, f"binary content (NUL byte at offset {nul})")
        return
    yield from _load_data(Path(name), data)


def _load_data(path: Path, data: bytes) -> Iterator[Loaded]:
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        # Not decoded here: pages declare their own charset, and trafilatura honours it.
        yield _load_html(path, data)
        return
    text = _decode(path, data)
    if isinstance(text, Skip):
        yield text
    elif suffix in JSONL_SUFFIXES:
        yield from _load_jsonl(path, text)
    elif suffix in JSON_SUFFIXES:
        yield from _load_json(path, text)
    else:
        yield _load_plain(path, text, markdown=suffix in MARKDOWN_SUFFIXES)


def _read_bytes(path: Path, max_bytes: int) -> bytes | Skip:
    """The file's bytes, refusing non-regular, oversized and empty files before reading them."""
    source = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return Skip(source, "not a regular file")  # a FIFO or device would block or never end
        if info.st_size > max_bytes:
            return Skip(source, f"file is {_mb(info.st_size)}, over the {_mb(max_bytes)} limit (max_file_mb)")
        if info.st_size == 0:
            return Skip(source, "empty file")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # bounded: the file may have grown since stat
    except PermissionError:
        return Skip(source, "permission denied")
    except FileNotFoundError:
        return Skip(source, "no such file or directory")
    except OSError as exc:
        return Skip(source, f"cannot read ({exc.strerror or exc})")
    if len(data) > max_bytes:
        return Skip(source, f"file is over the {_mb(max_bytes)} limit (max_file_mb)")
    if not data.strip():
        return Skip(source, "empty file (only whitespace)")
    nul = data.find(b"\x00")
    if nul >= 0 and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Skip(source, f"binary file (NUL byte at offset {nul})")
    return data


def _mb(size: int) -> str:
    return f"{size / _MIB:.1f} MB"


def _decode(path: Path, data: bytes) -> str | Skip:
    """UTF-8 text (BOM dropped); UTF-16 with a BOM is accepted since Windows editors write it."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding, start = "utf-16", 0
    else:
        encoding, start = "utf-8", 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[start:].decode(encoding)
    except UnicodeDecodeError as exc:
        where = start + exc.start
        return Skip(str(path), f"not valid {encoding.upper()} (bad byte at offset {where}: {exc.reason})")
    if not text.strip():
        return Skip(str(path), "empty file (only whitespace)")
    return text


# --------------------------------------------------------------------------- plain text and Markdown

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_WEEKDAY = r"(?:(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?\.?,?\s+)?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# Dates as bylines write them: "July 7, 2008", "7 July 2008", "Mon, 7 Jul 2008", "2008-07-07", "7/7/2008".
_DATE_RE = re.compile(
    rf"{_WEEKDAY}(?:{_MONTH}\s+{_DAY},?\s+\d{{4}}|{_DAY}\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{4}})"
    r"|\d{4}-\d{2}-\d{2}(?:[T ][\d:.+\-Z]+)?"
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}",
    re.IGNORECASE,
)
# "By NAME | DATE | TIME", "By NAME - DATE": the separators between byline parts.
_BYLINE_SEP_RE = re.compile(r"\s+[|·•—–-]\s+|\s*\|\s*")
_NAME_PARTICLES = frozenset(
    {"and", "&", "de", "da", "del", "der", "den", "di", "du", "la", "le", "van", "von", "bin", "al", "y"}
)


def _load_plain(path: Path, text: str, *, markdown: bool) -> Loaded:
    meta: dict[str, str] = {}
    if markdown:
        meta, text = _split_front_matter(text)
        text = _markdown_to_text(text)
    parsed = _parse_plain(text, title=meta.get("title", ""))
    if isinstance(parsed, str):
        return Skip(str(path), parsed)
    title, author, published, body = parsed
    return make_article(
        id=str(path),
        title=title,
        text=body,
        author=meta.get("author") or author,
        published=meta.get("date") or published,
        source=str(path),
    )


def _parse_plain(text: str, *, title: str = "") -> tuple[str, str, str, str] | str:
    """(title, author, published, body) from "title, byline?, body" text, or why it has no article."""
    lines = _normalize_text(text).split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return "no article text"  # e.g. Markdown that was only front matter or images
    if title and _one_line(lines[first]).casefold() == _one_line(title).casefold():
        lines = lines[first + 1 :]  # front matter title repeated as the first heading
    elif not title and len(lines[first]) <= _MAX_TITLE_CHARS:
        title = lines[first].strip()
        lines = lines[first + 1 :]
    author, published = "", ""
    byline_at = _find_byline(lines)
    if byline_at is not None:
        author, published = _parse_byline(lines[byline_at]) or ("", "")
        del lines[byline_at]
    paragraphs = _paragraphs(lines)
    if author:
        paragraphs = _drop_author_footer(paragraphs, author)
    body = "\n\n".join(paragraphs)
    if not body:
        return "no article text after the title line"
    return title, author, published, body


def _paragraphs(lines: list[str]) -> list[str]:
    return [block.strip("\n") for block in re.split(r"\n\s*\n", "\n".join(lines)) if block.strip()]


def _find_byline(lines: list[str]) -> int | None:
    """Index of a byline among the first few non-empty lines, if there is one."""
    checked = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        if _parse_byline(line) is not None:
            return index
        checked += 1
        if checked >= _BYLINE_WINDOW:
            break
    return None


def _parse_byline(line: str) -> tuple[str, str] | None:
    """(author, published) for "By NAME", "By NAME | DATE | TIME", "By NAME, DATE"; None otherwise.

    Strict on purpose: body sentences often start with "By" ("By 2025, 40% of homes...", "By revaluing
    its gold..."), so a name must be capitalised words and whatever follows it must look like a date,
    a "|"-separated part or a short capitalised title ("By Jane Doe, Political Correspondent").
    """
    line = line.strip().strip("*_").strip()
    if len(line) > _MAX_BYLINE_CHARS or not re.match(r"by\s", line, re.IGNORECASE):
        return None
    parts = [part.strip() for part in _BYLINE_SEP_RE.split(line[2:].strip()) if part.strip()]
    if not parts:
        return None
    name, _, rest = parts[0].partition(",")
    name, rest = name.strip(), rest.strip()
    words = name.split()
    if not _is_name(words):
        return None
    date_match = _DATE_RE.match(rest) if rest else None
    if rest and not date_match and not (len(words) >= 2 and _is_title_case(rest)):
        return None
    if not rest and len(parts) == 1 and len(words) < 2:
        return None  # "By Tuesday" alone is more likely a sentence fragment than a byline
    published = date_match.group().strip(" ,") if date_match else ""
    if not published:
        published = next((m.group() for p in parts[1:] if (m := _DATE_RE.match(p))), "")
    return name, published


def _is_name(words: list[str]) -> bool:
    if not 1 <= len(words) <= 8 or words[0].lower() in _NAME_PARTICLES:
        return False
    return all(
        word.lower() in _NAME_PARTICLES
        or (word[0].isupper() and re.fullmatch(r"[\w.'’-]+", word) is not None)
        for word in words
    ) and not any(ch.isdigit() for ch in "".join(words))


def _is_title_case(text: str) -> bool:
    words = text.split()
    return (
        len(words) <= 6
        and not text.endswith((".", "!", "?"))
        and all(word[0].isupper() or word.lower() in _NAME_PARTICLES or len(word) <= 3 for word in words)
    )


def _drop_author_footer(paragraphs: list[str], author: str) -> list[str]:
    """Drop a closing sign-off block that starts with the author's name ("Jane Doe\\nStaff Writer").

    It repeats the byline and would otherwise end up in the last chunk as noise.
    """
    if len(paragraphs) < 2:
        return paragraphs
    lines = [line.strip() for line in paragraphs[-1].split("\n")]
    is_footer = lines[0].lower() == author.lower() and all(
        len(line) <= 60 and not line.endswith((".", "?", "!", '"')) for line in lines
    )
    return paragraphs[:-1] if is_footer else paragraphs


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Simple ``key: value`` YAML front matter (title, author, date) that Markdown exports often carry."""
    match = re.match(r"\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", text, re.DOTALL)
    if not match:
        return {}, text
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in {"title", "author", "date", "published"}:
            field = "date" if key.strip().lower() == "published" else key.strip().lower()
            meta[field] = value.strip().strip("\"'")
    return meta, text[match.end() :]


_MD_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE), r"\1"),  # # heading
    (re.compile(r"^[ \t]{0,3}(?:[-=*_][ \t]*){3,}$", re.MULTILINE), ""),  # rules and setext underlines
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE), ""),  # > quote
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # ![image](src)
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url)
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # **bold** __bold__
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),  # _italic_, not snake_case
]


def _markdown_to_text(text: str) -> str:
    """Markdown to plain prose: the markup is noise for embeddings and would show in cited passages."""
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------- HTML


def article_from_html(html: str, source: str, url: str = "") -> Article | Skip:
    """The main article of an HTML page (id = ``url`` if given, else ``source``). Never fetches anything."""
    return _html_article(html, id=url or source, source=source, url=url)


def _load_html(path: Path, data: bytes) -> Loaded:
    return _html_article(data, id=str(path), source=str(path), url="")


def _html_article(content: str | bytes, *, id: str, source: str, url: str) -> Article | Skip:
    # Imported here: trafilatura takes a noticeable moment to import and most corpora have no HTML.
    import trafilatura

    try:
        # bare_extraction only parses what it is given; it has no code path that downloads. Balanced
        # mode (favor_recall off) already retries with recall settings when it finds little text, so
        # forcing recall would only let boilerplate into ordinary news pages. Comments are not the article.
        doc = trafilatura.bare_extraction(
            content, url=url or None, with_metadata=True, include_comments=False, include_tables=True
        )
        text = getattr(doc, "text", None) or ""
        if not text.strip():
            # Nothing "main" found: all visible text (scripts, styles, footers removed) beats nothing.
            text = trafilatura.html2txt(content)
    except Exception as exc:  # third-party parser on untrusted input: any failure is a bad page, not a bug
        return Skip(source, f"HTML could not be parsed ({type(exc).__name__}: {exc})")
    title = _one_line(getattr(doc, "title", None) or "")
    paragraphs = [line.strip() for line in text.split("\n") if line.strip()]
    # trafilatura keeps the page's <h1> as the first line; it is the title, not body text.
    if paragraphs and title and _one_line(paragraphs[0]).casefold() == title.casefold():
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return Skip(source, "no article text found")
    page_url = getattr(doc, "url", None) or ""
    return make_article(
        id=id,
        title=title,
        text="\n\n".join(paragraphs),
        author=getattr(doc, "author", None) or "",
        published=_publication_date(content, getattr(doc, "date", None) or ""),
        source=source,
        # A saved page's canonical URL lets readers open the original.
        url=url or (page_url if page_url.startswith(("http://", "https://")) else ""),
    )


def _publication_date(content: str | bytes, found: str) -> str:
    """The page's date, unless it was only guessed from a "Copyright 2024" footer.

    htmldate's last resort is January 1st of the copyright year, which is when the site's notice
    was last changed, not when the article was published: an empty date is better than a wrong one.
    Then only the page's markup and plainly written dates count (htmldate without its extensive search).
    """
    if not found.endswith("-01-01"):
        return found
    from htmldate import find_date
    from htmldate.core import COPYRIGHT_PATTERN

    html = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    match = COPYRIGHT_PATTERN.search(html)
    if match is None or match.group(1) != found[:4]:
        return found
    try:
        return find_date(html, extensive_search=False, original_date=True) or ""
    except Exception:  # third-party parser on untrusted input
        return ""


# --------------------------------------------------------------------------- JSON and JSON Lines

_TEXT_KEYS = ("text", "body", "content")
_TITLE_KEYS = ("title", "headline")
_AUTHOR_KEYS = ("author", "byline", "authors")
_DATE_KEYS = ("date", "published")
_URL_KEYS = ("url", "link")


def _load_jsonl(path: Path, text: str) -> Iterator[Loaded]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}#{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Skip(where, f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting thousands deep
            yield Skip(where, f"line {number}: unreadable JSON ({_first_line(exc)})")
            continue
        yield _record_article(record, default_id=where, source=where, label=f"line {number}")


def _load_json(path: Path, text: str) -> Iterator[Loaded]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Skip(str(path), f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
        return
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting thousands deep
        yield Skip(str(path), f"unreadable JSON ({_first_line(exc)})")
        return
    if isinstance(data, dict):
        yield _record_article(data, default_id=str(path), source=str(path), label="the object")
    elif isinstance(data, list) and data:
        for index, record in enumerate(data):
            where = f"{path}#{index}"
            yield _record_article(record, default_id=where, source=where, label=f"record {index}")
    elif isinstance(data, list):
        yield Skip(str(path), "empty JSON list (no records)")
    else:
        yield Skip(str(path), f"expected a JSON object or a list of objects, got {_json_type(data)}")


def _record_article(record: Any, *, default_id: str, source: str, label: str) -> Loaded:
    if not isinstance(record, dict):
        return Skip(source, f"{label}: expected a JSON object, got {_json_type(record)}")
    text = _field(record, _TEXT_KEYS, separator="\n\n")
    if not text.strip():
        return Skip(source, f"{label}: no text (looked for {', '.join(map(repr, _TEXT_KEYS))})")
    return make_article(
        id=_field(record, ("id",)).strip() or default_id,
        title=_field(record, _TITLE_KEYS),
        text=text,
        author=_field(record, _AUTHOR_KEYS, separator=", "),
        published=_field(record, _DATE_KEYS),
        source=source,
        url=_field(record, _URL_KEYS),
    )


def _field(record: dict[str, Any], keys: tuple[str, ...], separator: str = " ") -> str:
    """The first of ``keys`` with a usable value, as text."""
    for key in keys:
        value = _as_text(record.get(key), separator)
        if value.strip():
            return value
    return ""


def _as_text(value: Any, separator: str) -> str:
    """Coerce a JSON value to text: numbers as written, lists joined, objects by their name/text."""
    if isinstance(value, list):
        # One level only: deeper nesting is not article text, and recursion must stay bounded.
        return separator.join(part for item in value if (part := _scalar_text(item).strip()))
    return _scalar_text(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""  # true/false/null say nothing a reader could use
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return next(
            (text for key in ("name", "text", "value") if isinstance(text := value.get(key), str)), ""
        )
    return ""


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0][:200]


def _json_type(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
