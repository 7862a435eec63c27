"""`newsbot reembed`: give every stored passage the current encoder's vectors, from the stored text.

For a store embedded by another encoder (another backend, or a new model file): no article file is
read again, since the store holds each article's text and each passage's offsets and sentences.

Crash-safe like ingest: passages are re-embedded in id order, a batch per transaction, and each
transaction records how far it got (meta ``reembed``: the target encoder and the last id done) and
bumps the store generation, so readers see each batch whole and a killed run loses at most the batch
in flight; the next run carries on from there. The store keeps naming the old encoder until the last
batch, so readers with the old settings keep answering meanwhile (from vectors of both, which agree to
a cosine of ~0.99), and readers with the new settings are told to finish the reembed. The old encoder
may not write again until it is finished (Store.writer), or passages written meanwhile would fall
behind the recorded position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from embeddings.chunking import embed_title, embedding_text, load_tokenizer
from embeddings.encoder import Encoder
from embeddings.store import REEMBED_KEY, Store

# Passages per transaction: large enough that the encoder batches well, small enough that a kill
# costs seconds of work.
BATCH_PASSAGES = 1024


@dataclass
class ReembedReport:
    passages: int = 0
    seconds: float = 0.0
    before: str | None = None
    after: str = ""

    def summary(self) -> str:
        if not self.passages and self.before == self.after:
            return f"nothing to do: every passage is embedded by {self.after!r}"
        return (
            f"{self.passages} passages re-embedded in {self.seconds:.1f} s "
            f"(was {self.before!r}, now {self.after!r})"
        )


def reembed(
    store: Store,
    encoder: Encoder,
    *,
    batch_size: int = 32,
    batch_passages: int = BATCH_PASSAGES,
    progress: bool = False,
) -> ReembedReport:
    """Re-embed the passages of a store whose writer lock the caller holds (opened with
    ``encoder=None``); afterwards the store records ``encoder.identity``."""
    started = time.perf_counter()
    meta = store.meta("encoder", REEMBED_KEY)
    report = ReembedReport(before=meta.get("encoder"), after=encoder.identity)
    target, _, done = meta.get(REEMBED_KEY, "").partition("\t")
    if target != encoder.identity:  # none under way, or one to another encoder: start from the top
        if meta.get("encoder") == encoder.identity:
            return report
        done = "-1"
    last = int(done)
    tokenizer = load_tokenizer(encoder.tokenizer_file)
    db = store.db
    total = db.execute("SELECT COUNT(*) FROM chunks WHERE id > ?", (last,)).fetchone()[0]
    titles: dict[str, str] = {}
    from tqdm import tqdm  # not at the top: answering a question, which imports this module, never needs it

    with tqdm(total=total, desc="reembed", unit=" passages", disable=not progress, leave=False) as bar:
        while True:
            rows = db.execute(
                "SELECT c.id, c.article_id, a.title, substr(a.text, c.start + 1, c.end - c.start), "
                "c.sentences FROM chunks c JOIN articles a ON a.id = c.article_id "
                "WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, batch_passages),
            ).fetchall()
            if not rows:
                break
            texts, spans = [], []
            for _, article_id, title, passage, sentences in rows:
                if article_id not in titles:
                    titles[article_id] = embed_title(tokenizer, title)[0]
                text = embedding_text(titles[article_id], passage)
                shift = len(text) - len(passage)
                pairs = np.frombuffer(sentences, dtype=np.int32).reshape(-1, 2) + shift
                texts.append(text)
                spans.append([(int(a), int(b)) for a, b in pairs])
            vectors, sentence_vectors = encoder.encode_spans(texts, spans, batch_size=batch_size)
            counts = np.cumsum([len(s) for s in spans])[:-1]
            per_row = np.split(sentence_vectors.astype(np.float16), counts)
            last = rows[-1][0]
            finished = (
                len(rows) < batch_passages
                or not db.execute("SELECT 1 FROM chunks WHERE id > ? LIMIT 1", (last,)).fetchone()
            )
            with store.transaction():
                generation = store.generation + 1
                db.executemany(
                    "UPDATE chunks SET vector = ?, sentence_vectors = ?, generation = ? WHERE id = ?",
                    [
                        (
                            np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                            sv.tobytes(),
                            generation,
                            row[0],
                        )
                        for row, v, sv in zip(rows, vectors, per_row, strict=True)
                    ],
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
                if finished:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder', ?)", (encoder.identity,))
                    db.execute("DELETE FROM meta WHERE key = ?", (REEMBED_KEY,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (REEMBED_KEY, f"{encoder.identity}\t{last}"),
                    )
            report.passages += len(rows)
            bar.update(len(rows))
            if finished:
                break
    if total == 0:  # an empty store
        with store.transaction():
            db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder', ?)", (encoder.identity,))
            db.execute("DELETE FROM meta WHERE key = ?", (REEMBED_KEY,))
    report.seconds = time.perf_counter() - started
    return report
