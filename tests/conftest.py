"""Shared fixtures: the real model (loaded once), throwaway stores, a loopback Discord, the shared data."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from embeddings.encoder import Encoder, load_encoder
from embeddings.engine import Engine
from embeddings.settings import SAMPLES_DIR, Settings, load_settings
from tests.discord_server import FakeDiscord

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SEED = next(SAMPLES_DIR.glob("*.txt"))
HEARTBEAT = 0.5


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """`newsbot serve` sets up logging for the whole process (one handler on the root logger, writing
    to the stderr of the moment): put back what was there, or later tests log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    defaults = load_settings(env={})
    return load_encoder(defaults.model, defaults.backend, defaults.device)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The repo's defaults, with a store of this test's own and no environment overrides.
    return load_settings(env={}, store=tmp_path / "store")


@pytest.fixture
def engine(settings: Settings, encoder: Encoder) -> Engine:
    return Engine(settings, encoder)


@pytest.fixture(scope="session")
def sample_engine(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Engine:
    """An engine over the shipped sample article, shared by tests that only read."""
    settings = load_settings(env={}, store=tmp_path_factory.mktemp("sample") / "store")
    engine = Engine(settings, encoder)
    engine.ensure_default_corpus()
    return engine


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    """A loopback Discord for the real discord.py client, heartbeating every HEARTBEAT seconds."""
    async with FakeDiscord(heartbeat_interval=HEARTBEAT) as fake:
        yield fake


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not here (a fresh clone has none)")
    return data


# Three short made-up stories for conversations: follow-ups, new subjects, scope.
STORIES = {
    "ferry.txt": (
        "Harbour ferry returns after repairs\n\n"
        "The Kestrel Bay ferry resumed sailings on Monday after six weeks of repairs to its hull. "
        "Harbour master Ingrid Solberg said the repairs cost 240,000 krone. "
        "The crossing to Vellholm island takes forty minutes.\n\n"
        "Solberg said a second vessel, the Osprey, will join the route in the spring."
    ),
    "mill.txt": (
        "Paper mill to close in Dunmore\n\n"
        "The Dunmore paper mill will close in March with the loss of 310 jobs, "
        "its owner Larchfield Group said. "
        "Larchfield blamed the price of energy and falling demand for newsprint.\n\n"
        "The mill opened in 1921 and once employed more than a thousand people."
    ),
    "choir.txt": (
        "Village choir wins national title\n\n"
        "The Ashby Parva choir won the national amateur choir championship in Cardiff on Saturday. "
        "The Ashby Parva choir's conductor is Meera Thackeray. "
        "She said the 28 singers had rehearsed twice a week since January."
    ),
}


@pytest.fixture
def stories(tmp_path: Path) -> Path:
    """A folder holding STORIES."""
    folder = tmp_path / "stories"
    folder.mkdir()
    for name, text in STORIES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
