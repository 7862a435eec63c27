"""Embedding through Ray Data, for backfills larger than one machine.

:class:`RayEncoder` is an :class:`~embeddings.encoder.Encoder`: the Ingestor hands it its batches of
passages as it would the local encoder, and each call becomes one Ray Data job, ``from_arrow`` (one
block per task) -> ``map_batches(embed_rows)`` -> back to the driver, rows put back in their order.
Reading, chunking, the SQLite writes and the indexes stay on the driver, so the store is written as by a
local ingest: the same passage ids (derived from content) and the same vectors. The int8 model quantises
its activations per batch, so a vector depends slightly on which passages share its batch; the rows are
therefore cut into exactly the batches the local encoder would have made (see :meth:`RayEncoder.groups`),
and the vectors match a local ingest to float rounding.

The map is a plain function run as Ray tasks, not an actor class: each worker process loads the
encoder on its first task and keeps it, and Ray keeps its worker processes between tasks and between
jobs, so an ingest of many 2,048-passage calls loads the model once per worker instead of once per call
(an actor pool lives only as long as one job). Each task reserves ``cpus_per_task`` CPUs and runs the
encoder on that many threads, so the cluster's CPUs are filled without oversubscribing them.

Addresses: ``None`` or ``"local"`` starts a Ray on this machine (every core, loopback only, no
dashboard, no usage reports) and stops it at :meth:`RayEncoder.close`; a Ray this process already
joined is used as it is; anything else (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``) is given to
``ray.init`` to join a running cluster, whose machines need newsbot installed (README, "Backfills on
Ray").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from embeddings.chunking import SPECIAL_TOKENS
from embeddings.encoder import Encoder, EncoderError, load_encoder

log = logging.getLogger(__name__)

LOCAL = "local"
# Rows per Ray task at most (whole encoder batches, at least one): enough that a task's scheduling and
# transfer cost is small next to encoding it, few enough that the Ingestor's 2,048-passage calls keep
# 8 tasks or more in flight; on a bigger cluster a call is cut finer, down to one batch per task.
MAX_ROWS_PER_TASK = 256


class RayUnavailable(EncoderError):
    """Ray is not installed, or the cluster cannot be reached."""


@functools.lru_cache(maxsize=4)
def worker_encoder(model: str, backend: str, device: str, threads: int) -> Encoder:
    """The encoder of one Ray worker process, loaded on its first task and kept for the next ones.

    Runs on the worker: ``threads`` is the number of CPUs its task reserved, so the process's tasks
    never use more cores than Ray gave them.
    """
    if backend in ("onnx", "onnx-int8"):
        from embeddings.onnx_encoder import OnnxEncoder

        return OnnxEncoder(model, quantized=backend == "onnx-int8", threads=threads)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    return load_encoder(model, backend, device)


def embed_rows(
    rows: dict[str, np.ndarray], *, model: str, backend: str, device: str, threads: int, batch_size: int
) -> dict[str, np.ndarray]:
    """The ``map_batches`` function, on one task's block of rows: ``row`` and ``text`` in, ``row`` and
    ``vector`` out; with a ``spans`` column (each row's sentence spans, flattened start, end, ...), also
    ``sentence_vectors``: each row's span vectors as float32 bytes."""
    encoder = worker_encoder(model, backend, device, threads)
    texts = [str(t) for t in rows["text"]]
    if "spans" not in rows:
        return {"row": rows["row"], "vector": encoder.encode(texts, batch_size=batch_size)}
    spans = [
        [(int(a), int(b)) for a, b in np.asarray(flat, dtype=np.int64).reshape(-1, 2)]
        for flat in rows["spans"]
    ]
    vectors, pooled = encoder.encode_spans(texts, spans, batch_size=batch_size)
    cuts = np.cumsum([len(s) for s in spans])[:-1]
    per_row = np.empty(len(texts), dtype=object)
    per_row[:] = [np.ascontiguousarray(part, dtype=np.float32).tobytes() for part in np.split(pooled, cuts)]
    return {"row": rows["row"], "vector": vectors, "sentence_vectors": per_row}


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Make a Ray started here take 127.0.0.1 as its address, so its processes talk over loopback only.

    Ray picks the address other machines would reach it on unless clusters are switched off, which it
    does only on macOS and Windows; ``ray.init(_node_ip_address="127.0.0.1")`` is mapped back to that
    address. The switch is restored at once: it is read when the node starts, and a later ``ray.init``
    to a real cluster in the same process must see the real address.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _check_reachable(address: str | None, timeout: float = 10.0) -> str | None:
    """Fail at once when nothing listens at a ``HOST:PORT`` address (``auto``: the one in RAY_ADDRESS):
    ``ray.init`` would retry for minutes. Returns the host; ``ray://`` and the rest are left to Ray."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS")
    if not address or address == "auto" or "://" in address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT, auto or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(
            f"nothing answers at {address} ({err}); is `ray start --head` running?"
        ) from None
    return host


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def _quiet_ray_data() -> None:
    """No per-job banners or progress bars from Ray Data: the ingest has its own progress bar, and a
    backfill runs hundreds of jobs. ``-v`` (logging at INFO) brings the banners back."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data says once that progress bars are off, at WARNING; they are off on purpose.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.WARNING)


class RayEncoder:
    """The local encoder's vectors, computed by Ray Data tasks on a local Ray or an existing cluster.

    ``local`` (the same model and backend, loaded in this process) gives the name, dimension, token
    limit and ``count_tokens``, which chunking needs on the driver; only ``encode`` goes to Ray.
    """

    def __init__(
        self,
        local: Encoder,
        *,
        model: str,
        backend: str,
        device: str = "auto",
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_task: int = 1,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                "--ray needs Ray Data: pip install -e '.[ray]' (the dev extra includes it)"
            ) from None
        self.name = local.name
        self.dim = local.dim
        self.max_tokens = local.max_tokens
        self.identity = local.identity
        self.tokenizer_file = local.tokenizer_file
        self._local = local
        self._model, self._backend, self._device = model, backend, device
        self._cpus_per_task = max(1, cpus_per_task)
        self._gpus_per_task = 1 if device == "cuda" else 0
        self._started = False

        # No usage reports to Ray's servers: newsbot reaches nothing but the cluster it is given.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            log.info("using the Ray this process already joined")
        else:
            try:
                self._start(ray, address, num_cpus)
            except Exception as err:  # Ray raises many kinds; each means no Ray to embed on
                if ray.is_initialized():  # half-way: leave nothing running
                    ray.shutdown()
                if address in (None, LOCAL):
                    raise RayUnavailable(f"cannot start a local Ray: {err}") from None
                hint = ""
                if "RAY_AUTH_MODE" not in os.environ:
                    hint = (
                        " (a cluster with token authentication needs RAY_AUTH_MODE=token here, and its "
                        "token in ~/.ray/auth_token or RAY_AUTH_TOKEN: see `ray get-auth-token`)"
                    )
                raise RayUnavailable(f"cannot join the Ray cluster at {address}: {err}{hint}") from None
        _quiet_ray_data()
        self.cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.cluster_cpus < self._cpus_per_task:
            self.close()
            raise RayUnavailable(
                f"the Ray cluster has {self.cluster_cpus} CPUs; "
                f"each embedding task needs {self._cpus_per_task}"
            )
        log.info("embedding on Ray: %d CPUs, %d per task", self.cluster_cpus, self._cpus_per_task)

    def _start(self, ray: Any, address: str | None, num_cpus: int | None) -> None:
        quiet = not logging.getLogger().isEnabledFor(logging.INFO)
        options: dict[str, Any] = {
            "logging_level": logging.WARNING if quiet else logging.INFO,
            "log_to_driver": not quiet,
        }
        if address in (None, LOCAL):
            # Ray turns on token authentication for a new local cluster and warns that it did; that is
            # what newsbot wants, so the warning would only alarm (an explicit RAY_AUTH_MODE is kept).
            with _loopback_node(), _logger_level("ray._private.authentication", logging.ERROR):
                ray.init(
                    address=LOCAL,  # a new Ray on this machine, even where RAY_ADDRESS names a cluster
                    num_cpus=num_cpus or machine_cpus(),
                    include_dashboard=False,
                    **options,
                )
        else:
            if num_cpus is not None:
                raise ValueError("num_cpus is for a local Ray; a cluster has the CPUs its nodes bring")
            host = _check_reachable(address)
            # Ray swaps a loopback host for this machine's network address, where a head started with
            # --node-ip-address=127.0.0.1 does not listen; the address is used as given instead.
            with _loopback_node() if host in LOOPBACK else contextlib.nullcontext():
                ray.init(address=address, **options)
        self._started = True

    # -- Encoder ------------------------------------------------------------------------------
    def groups(self, texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
        """Row numbers per Ray task: the local encoder's own batches, dealt out in whole batches.

        OnnxEncoder sorts a call's texts by word pieces, longest first, and encodes them ``batch_size``
        at a time; with int8 a passage's vector depends on the passages that share its batch (cosine
        ~0.99 to the same passage batched otherwise). Sorting here as it does and giving each task a
        run of whole batches, already in its order, makes every batch the one a local ingest encodes.
        (sentence-transformers batches by characters, but its fp32 vectors do not depend on batching.)
        """
        lengths = np.minimum(np.asarray(self._local.count_tokens(texts)) + SPECIAL_TOKENS, self.max_tokens)
        order = np.argsort(-lengths, kind="stable")  # as OnnxEncoder buckets: longest first, ties in order
        # As few tasks as keep each at most MAX_ROWS_PER_TASK, in whole rounds over the cluster's task
        # slots, so the slots finish together: 2,048 rows on 2 slots are 8 tasks of 8 batches.
        slots = max(1, self.cluster_cpus // self._cpus_per_task)
        batches = math.ceil(len(texts) / batch_size)
        rounds = math.ceil(batches / (slots * max(1, MAX_ROWS_PER_TASK // batch_size)))
        step = math.ceil(batches / (slots * rounds)) * batch_size
        return [order[i : i + step] for i in range(0, len(order), step)]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given: one Ray Data job."""
        return self._run(texts, None, batch_size)[0]

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode`'s vectors and the local encoder's span vectors (all spans, text by text)."""
        return self._run(texts, spans, batch_size)

    def _run(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]] | None, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow as pa
        import ray.data

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out, out
        batch_size = max(1, batch_size)
        # One Arrow table per task: each is one block, and map_batches(batch_size=None) hands each
        # block to the function whole, so the groups reach the encoder exactly as cut.
        blocks = []
        for rows in self.groups(texts, batch_size):
            columns = {"row": pa.array(rows), "text": pa.array([texts[i] for i in rows], type=pa.string())}
            if spans is not None:
                flat = [[x for span in spans[i] for x in span] for i in rows]
                columns["spans"] = pa.array(flat, type=pa.list_(pa.int64()))
            blocks.append(pa.table(columns))
        embed = functools.partial(
            embed_rows,
            model=self._model,
            backend=self._backend,
            device=self._device,
            threads=self._cpus_per_task,
            batch_size=batch_size,
        )
        dataset = ray.data.from_arrow(blocks).map_batches(
            embed,
            batch_size=None,
            batch_format="numpy",
            num_cpus=self._cpus_per_task,
            num_gpus=self._gpus_per_task,
        )
        filled = np.zeros(len(texts), dtype=bool)
        pooled: list[bytes] = [b""] * len(texts)
        # Blocks may come back in any order; each row carries its position.
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.asarray(batch["row"], dtype=np.int64)
            out[rows] = np.asarray(batch["vector"], dtype=np.float32)
            filled[rows] = True
            if spans is not None:
                for row, data in zip(rows.tolist(), batch["sentence_vectors"], strict=True):
                    pooled[row] = bytes(data)
        if not filled.all():
            raise EncoderError(f"Ray returned {int(filled.sum())} of {len(texts)} vectors")
        if spans is None:
            return out, np.zeros((0, self.dim), dtype=np.float32)
        sentences = np.frombuffer(b"".join(pooled), dtype=np.float32).reshape(-1, self.dim)
        if len(sentences) != sum(len(s) for s in spans):
            raise EncoderError(
                f"Ray returned {len(sentences)} span vectors for {sum(len(s) for s in spans)} spans"
            )
        return out, sentences.copy()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._local.count_tokens(texts)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the Ray this encoder started (a cluster it joined keeps running); safe to repeat."""
        if self._started:
            import ray

            self._started = False
            ray.shutdown()

    def __enter__(self) -> RayEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def machine_cpus() -> int:
    """Every CPU this process may use: a container's limit, not the host's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
