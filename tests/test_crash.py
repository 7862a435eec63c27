"""Crash safety: `newsbot ingest` (the real CLI, in a subprocess) is SIGKILLed at random moments.

After every kill the store must open and be consistent (the vector index a Searcher opens, a saved
FAISS file plus the changes since, holds exactly the passage rows and their vectors; the keyword
index holds them too whenever it says it has caught up), every file's article must be in its old or
its new state, nothing stored before must be lost; the next run carries on, and after the last one
the store equals a clean ingest of the final folder.

The folder goes from 300 stories (version 1) to version 2 (120 changed, 26 deleted, 20 new, 5 copies
of stored stories) and back, and so on; each stage is killed several times, then a run completes it.

Starting Python with torch takes seconds, so the next two runs start while the current one works: each
loads the model, opens the store and waits for the writer lock (``--wait``), which the test holds
between runs. Each is stopped (SIGSTOP) once it waits and let go (SIGCONT) when its turn comes, so the
moment each run starts writing is known and kills are timed from it. Start-up still dominates the
time this test takes (the kills need a new process each).
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from embeddings import index as vector_index
from embeddings import keyword
from embeddings.articles import load_paths, normalized_hash
from embeddings.encoder import Encoder, load_encoder
from embeddings.engine import Engine
from embeddings.records import Article
from embeddings.retrieval import Searcher
from embeddings.settings import Settings
from embeddings.store import DB_NAME, LOCK_NAME, Store, read_generation

REPO = Path(__file__).resolve().parent.parent
EXACT_BACKEND = "onnx"
SEED = 20240611
ARTICLES = 300
MIN_KILLS = 20
# Kills planned in each stage: the first ingests 300 new files, later ones change 150 or so.
KILLS_PER_STAGE = [6, 8, 8, 3]
MAX_STAGES = 9

PLACES = [
    "Riverton",
    "Elmwood",
    "Ashford",
    "Brackley",
    "Cedarville",
    "Dunmore",
    "Eastleigh",
    "Fairhaven",
    "Glenrock",
    "Hollowmere",
]
THINGS = ["bridge", "library", "market", "school", "harbour", "museum", "station", "park", "pool", "orchard"]
CHANGED = {i for i in range(ARTICLES) if i % 5 in (0, 1)}
DELETED = {i for i in range(ARTICLES) if i % 7 == 3} - CHANGED
# Stories that stay as they are, and get a copy in version 2: the copies attach to them.
COPIED = [i for i in (102, 153, 208, 254, 278) if i not in CHANGED | DELETED]


def story(i: int, version: int) -> str:
    place, thing = PLACES[i % 10], THINGS[(i // 10) % 10]
    number = i * 7 + 3 if version == 1 else i * 11 + 5
    return f"{place} {thing} news {i}\n\nThe {thing} in {place} logged {number} visits in week {i}.\n"


def folder_state(version: int) -> dict[str, str]:
    """File name -> content. Version 1: 300 stories. Version 2: 120 changed, 26 deleted, 20 new, 5 copies."""
    files = {f"n{i:03d}.txt": story(i, 1) for i in range(ARTICLES)}
    if version == 2:
        files.update({f"n{i:03d}.txt": story(i, 2) for i in CHANGED})
        for i in DELETED:
            del files[f"n{i:03d}.txt"]
        files.update(
            {
                f"m{j:03d}.txt": f"Late news {j}\n\nThe late ferry number {j} carried {j * 13} riders.\n"
                for j in range(20)
            }
        )
        for i in COPIED:  # the same story, cased and spaced differently, under another name
            title, body = story(i, 1).split("\n\n")
            files[f"n{i:03d}_copy.txt"] = f"{title} (copy)\n\n{body.upper().replace(' ', '  ')}"
    return files


def write_folder(folder: Path, files: dict[str, str]) -> None:
    for path in folder.iterdir():
        if path.name not in files:
            path.unlink()
    for name, content in files.items():
        path = folder / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)


def loaded(folder: Path) -> dict[str, Article]:
    """What the loader makes of each file now: source item -> Article."""
    return {item.id: item for item in load_paths([folder]) if isinstance(item, Article)}


# --------------------------------------------------------------------------- the checks


@dataclass
class Snapshot:
    generation: int
    articles: dict[str, tuple[str, str]]  # id -> (content_hash, text)
    sources: dict[str, str]  # item -> article id
    chunks: dict[int, tuple[str, bytes]]  # id -> (article id, vector)
    keyword_ids: set[int]  # passages in the keyword (tantivy) index
    keyword_generation: int | None  # the store generation it caught up with


def snapshot(root: Path, encoder: Encoder) -> Snapshot:
    store = Store(root, model=encoder.name, dim=encoder.dim, create=False)  # must open
    try:
        db = store.db
        db.execute("BEGIN")
        try:
            return Snapshot(
                store.generation,
                {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, content_hash, text FROM articles")},
                dict(db.execute("SELECT item, article_id FROM sources").fetchall()),
                {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, article_id, vector FROM chunks")},
                keyword.KeywordSearcher(root).ids(),
                keyword.read_generation(root),
            )
        finally:
            db.execute("COMMIT")
    finally:
        store.close()


def contents(index: faiss.Index) -> dict[int, np.ndarray]:
    """Passage id -> vector of an exact (IDMap2, Flat) index, the kind these small stores get."""
    mapped = faiss.downcast_index(index)
    ids = faiss.vector_to_array(mapped.id_map).tolist()
    assert len(ids) == index.ntotal == len(set(ids)), "duplicate or missing ids"
    vectors = faiss.downcast_index(mapped.index).reconstruct_n(0, index.ntotal)
    return dict(zip(ids, vectors, strict=True))


def check_index(index: vector_index.VectorIndex, snap: Snapshot) -> None:
    """The saved base, less what was removed or replaced since, plus what was added: the passages."""
    hidden = set(index.hidden.tolist())
    held = {i: v for i, v in contents(index.base).items() if i not in hidden}
    added = contents(index.added)
    assert not set(added) & set(held)
    held.update(added)
    assert set(held) == set(snap.chunks), "vector index ids != passage rows"
    for chunk_id, vector in held.items():
        stored = np.frombuffer(snap.chunks[chunk_id][1], dtype=np.float32)
        assert np.allclose(vector, stored, atol=1e-6), f"passage {chunk_id}: vectors differ"


def check_store(
    root: Path, encoder: Encoder, before: dict[str, Article], after: dict[str, Article], folder: Path
) -> Snapshot:
    """The invariants that must hold whenever no ingest is running, however the last one ended."""
    snap = snapshot(root, encoder)
    for chunk_id, (article_id, blob) in snap.chunks.items():
        vector = np.frombuffer(blob, dtype=np.float32)
        assert vector.shape == (encoder.dim,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3, chunk_id
        assert article_id in snap.articles, f"passage {chunk_id} of a missing article"
    with_chunks = {article_id for article_id, _ in snap.chunks.values()}
    held = set(snap.sources.values())
    for article_id in snap.articles:
        assert article_id in held, f"article {article_id} has no source"
        assert article_id in with_chunks, f"article {article_id} has no passages"
    assert held <= set(snap.articles), "a source points at a missing article"
    if snap.articles:
        assert all(g <= snap.generation for g in vector_index.saved_generations(root)), (
            "a file from the future"
        )
        searcher = Searcher(root, encoder)
        try:
            assert searcher.generation == snap.generation
            check_index(searcher.dense, snap)
        finally:
            searcher.close()
    # Every file: its old or its new state, never a mix; files in both states are never lost.
    for item in set(before) | set(after) | set(snap.sources):
        assert Path(item).parent == folder, item
        versions = {normalized_hash(a.text) for a in (before.get(item), after.get(item)) if a is not None}
        if item in snap.sources:
            _hash, text = snap.articles[snap.sources[item]]
            assert normalized_hash(text) in versions, f"{item}: neither its old nor its new text"
        else:
            assert not (item in before and item in after), f"{item} was lost"
    return snap


def expected_for(files: dict[str, Article]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Articles and sources a complete ingest gives: the first file of each story holds it."""
    articles: dict[str, tuple[str, str]] = {}
    by_story: dict[str, str] = {}
    sources = {}
    for item in sorted(files):
        article = files[item]
        owner = by_story.setdefault(normalized_hash(article.text), item)
        if owner == item:
            articles[item] = (article.content_hash, article.text)
        sources[item] = owner
    return articles, sources


# --------------------------------------------------------------------------- the runs


class Lock:
    """The store's writer lock, held by the test between runs."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd

    def release(self) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def holder(self) -> str:
        return self.path.read_text().strip()


class Runs:
    """`newsbot ingest --prune` processes: one working, the next ones loading and waiting their turn."""

    SPARES = 2  # while one run works on one core, the next two load on the other: start-up is the cost

    def __init__(self, root: Path, folder: Path, logs: Path) -> None:
        self.root, self.folder, self.logs = root, folder, logs
        self.db = os.path.realpath(root / DB_NAME)
        self.spares: list[subprocess.Popen[bytes]] = []
        self.parked: set[int] = set()
        self.count = 0

    def top_up(self) -> None:
        while len(self.spares) < self.SPARES:
            self.count += 1
            log = open(self.logs / f"run-{self.count:02d}.log", "wb")  # noqa: SIM115 - the child writes it
            env = {
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "NEWSBOT_CONFIG": "/dev/null",
                "NEWSBOT_BACKEND": EXACT_BACKEND,
                # One thread: the next runs load on the other core meanwhile, and two OpenMP threads that
                # share a busy core wait on each other (several times slower on a loaded machine).
                "OMP_NUM_THREADS": "1",
            }
            command = [sys.executable, "-m", "bot.cli", "--store", str(self.root), "ingest", "-q", "--prune"]
            self.spares.append(
                subprocess.Popen(
                    [*command, "--wait", "600", str(self.folder)], stdout=log, stderr=log, env=env, cwd=REPO
                )
            )
            log.close()

    def park_waiting(self) -> None:
        """Stop each spare once it has the store open: it is then at the writer lock, or about to be."""
        for spare in self.spares:
            if spare.pid in self.parked or spare.poll() is not None:
                continue
            try:
                fds = os.listdir(f"/proc/{spare.pid}/fd")
                opened = any(os.readlink(f"/proc/{spare.pid}/fd/{fd}") == self.db for fd in fds)
            except OSError:
                continue
            if opened:
                os.kill(spare.pid, signal.SIGSTOP)
                self.parked.add(spare.pid)

    def start(self, lock: Lock) -> tuple[subprocess.Popen[bytes], float]:
        """Let the oldest spare take the writer lock; returns the run that took it, and when."""
        for spare in [spare for spare in self.spares if spare.poll() is not None]:
            # It took the lock at a hand-over before the test could (rare), and ran to the end.
            assert spare.returncode == 0, self.output()
            self.spares.remove(spare)
        self.top_up()
        self.park_waiting()
        chosen = self.spares[0]
        if chosen.pid in self.parked:
            os.kill(chosen.pid, signal.SIGCONT)
            self.parked.discard(chosen.pid)
        lock.release()
        deadline = time.monotonic() + 300
        while True:
            holder = lock.holder()
            current = next((spare for spare in self.spares if str(spare.pid) == holder), None)
            if current is not None:
                break
            assert chosen.poll() is None, self.output()
            assert time.monotonic() < deadline, "the next run never took the lock"
            time.sleep(0.005)
        self.spares.remove(current)
        return current, time.monotonic()

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("run-*.log")))[-3000:]

    def close(self) -> None:
        for spare in self.spares:
            spare.kill()
            spare.wait()


def regain(lock: Lock) -> threading.Event:
    """Block for the writer lock in the background; the event is set once the test holds it again."""
    got = threading.Event()

    def take() -> None:
        lock.acquire()
        got.set()

    threading.Thread(target=take, daemon=True).start()
    return got


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    root, folder, logs = tmp_path / "store", tmp_path / "news", tmp_path / "logs"
    for path in (root, folder, logs):
        path.mkdir()
    runs = Runs(root, folder, logs)
    try:
        yield runs
    finally:
        runs.close()


def to_embed(snap: Snapshot, after: dict[str, Article]) -> int:
    """How many files of the target state a run still has to embed (copies only attach)."""
    return sum(
        1
        for item, article in after.items()
        if not item.endswith("_copy.txt")
        and (
            item not in snap.sources
            or normalized_hash(snap.articles[snap.sources[item]][1]) != normalized_hash(article.text)
        )
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_never_breaks_the_store(
    runs: Runs, settings: Settings, encoder: Encoder, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    root, folder = runs.root, runs.folder.resolve()
    lock = Lock(root)
    lock.acquire()  # before any run exists: none may start until the test says so
    write_folder(folder, folder_state(1))
    runs.top_up()  # loading torch and the model while the reference below is built

    # The reference: a clean in-process ingest of version 1, timed (on one thread, as the runs are) to
    # spread the kills over a run; then timed again with nothing to do.
    # int8's activation scales are computed per batch, so a resumed run (other batches) would store
    # vectors a hair apart (cosine >= 0.98); the fp32 graph makes "equal to a clean ingest" exact.
    encoder = load_encoder(settings.model, EXACT_BACKEND)
    settings = settings.replace(backend=EXACT_BACKEND)
    reference = Engine(settings.replace(store=tmp_path / "reference"), encoder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clock = time.perf_counter()
        reference.ingest([folder], prune=True)
        full = time.perf_counter() - clock
    finally:
        torch.set_num_threads(threads)
    clock = time.perf_counter()
    reference.ingest([folder], prune=True)
    noop = time.perf_counter() - clock
    per_passage = max(full - noop, 0.1) / ARTICLES
    # Runs take this times the estimate (a run has a core to itself; the reference shared one with the
    # first run loading): learnt from the runs that finish.
    slowdown = 0.6

    def run_seconds(files: int) -> float:
        return noop + 0.3 + files * per_passage

    kills: Counter[str] = Counter()
    keyword_behind = 0
    bases: set[int] = set()  # generations of the FAISS files seen: changes folded into new ones
    timeline: list[str] = []
    waited = checking = 0.0  # for the next run to be ready; checking the store after kills
    stages: list[tuple[int, int, int]] = []  # version, kills, runs
    states: dict[int, dict[str, Article]] = {0: {}, 1: loaded(folder)}
    version, previous = 1, 0
    for stage in range(MAX_STAGES):
        before, after = states[previous], states[version]
        planned = KILLS_PER_STAGE[min(stage, len(KILLS_PER_STAGE) - 1)]
        stage_kills = stage_runs = 0
        while True:
            snap = (
                snapshot(root, encoder) if (root / DB_NAME).exists() else Snapshot(0, {}, {}, {}, set(), None)
            )
            files = to_embed(snap, after)
            estimate = run_seconds(files)
            clock = time.monotonic()
            current, t0 = runs.start(lock)
            waited += time.monotonic() - clock
            stage_runs += 1
            back = regain(lock)
            runs.top_up()
            expected = estimate * slowdown
            kill = stage_kills < planned
            # Most kills at a random moment of the run (reading, embedding, writing). The last two of a
            # stage at a random moment 0-50 ms after the run's first commit, when the next writes, the
            # pruning and the saving of the derived indexes happen: too short a window to hit by chance
            # often. (Last, because a commit often leaves a run little to do.)
            after_commit = stage_kills >= planned - 2
            delay = rng.uniform(0.0, 0.05) if after_commit else rng.uniform(0.02, 0.8) * expected
            deadline = t0 + delay if kill and not after_commit else None
            while not back.is_set():
                now = time.monotonic()
                if kill and deadline is None and read_generation(root) > snap.generation:
                    deadline = now + delay
                if deadline is not None and now >= deadline:
                    break
                runs.park_waiting()
                time.sleep(0.005)
            what = f"v{version} est {estimate:.1f}x{slowdown:.2f} " + (
                f"{delay:.2f} after the first commit" if after_commit else f"at {delay:.1f}"
            )
            if back.is_set():  # the run finished its ingest (it may still be exiting): the stage is done
                took = time.monotonic() - t0
                timeline.append(f"{what}: done first, in {took:.1f}")
                if files >= 50:  # a run with little to do says more about start-up than about speed
                    slowdown = 0.3 * slowdown + 0.7 * took / estimate
                assert current.wait(60) == 0, runs.output()
                runs.park_waiting()
                break
            current.kill()
            current.wait()
            timeline.append(f"{what}: killed")
            assert back.wait(300), "the writer lock was not released by the kill"
            stage_kills += 1
            clock = time.monotonic()
            after_kill = check_store(root, encoder, before, after, folder)
            # Killed between the two commits, the keyword index may lag the store; it never claims to
            # be caught up when it is not.
            if after_kill.keyword_generation == after_kill.generation:
                assert after_kill.keyword_ids == set(after_kill.chunks), "keyword index != passages"
            elif after_kill.generation != snap.generation:
                keyword_behind += 1  # the next run must catch it up (checked when the stage completes)
            checking += time.monotonic() - clock
            if after_kill.generation == snap.generation:
                kills["before any write"] += 1
            else:
                kills["after a write"] += 1
        stages.append((version, stage_kills, stage_runs))
        # The run that was not killed completed the stage: the store is what a complete ingest gives.
        done = check_store(root, encoder, before, after, folder)
        bases.update(vector_index.saved_generations(root))
        assert done.keyword_generation == done.generation, "the completing run left the keyword index behind"
        assert done.keyword_ids == set(done.chunks), "keyword index != passage rows"
        assert (done.articles, done.sources) == expected_for(after)
        if sum(kills.values()) >= MIN_KILLS and version == 1:
            break
        previous, version = version, 3 - version
        write_folder(folder, folder_state(version))
        states[version] = loaded(folder)
    else:
        pytest.fail(f"only {sum(kills.values())} kills in {MAX_STAGES} stages: {stages}; {timeline}")

    # Back at version 1: the store equals the clean ingest of that folder, passage ids and vectors too.
    final, clean = snapshot(root, encoder), snapshot(reference.store_path, encoder)
    assert not list(root.glob("vectors-*.tmp")), "a half-written index file was left behind"
    assert 1 <= len(vector_index.saved_generations(root)) <= 2
    assert final.articles == clean.articles and final.sources == clean.sources
    assert final.chunks.keys() == clean.chunks.keys()
    for chunk_id, (article_id, blob) in final.chunks.items():
        assert clean.chunks[chunk_id][0] == article_id
        vector, clean_vector = (
            np.frombuffer(blob, np.float32),
            np.frombuffer(clean.chunks[chunk_id][1], np.float32),
        )
        assert np.allclose(vector, clean_vector, atol=1e-4)
    print(
        f"\n{sum(kills.values())} kills {dict(kills)}, {keyword_behind} leaving the keyword index behind; "
        f"FAISS files of generations {sorted(bases)}; "
        f"stages (version, kills, runs) {stages}; "
        f"reference ingest {full:.1f} s, nothing-changed re-ingest {noop:.2f} s; "
        f"{time.monotonic() - started:.0f} s in all, {waited:.0f} s waiting for Python to start, "
        f"{checking:.0f} s checking\n" + "\n".join(timeline)
    )
    assert sum(kills.values()) >= MIN_KILLS and len(COPIED) == 5
    assert kills["before any write"] >= 1 and kills["after a write"] >= 1
    assert len(bases) >= 3, "the stages' changes were never folded into a new FAISS file"
