"""Embedding through Ray Data, for backfills larger than one machine.

:class:`RayEncoder` is an :class:`~embeddings.encoder.Encoder`: the Ingestor hands it its batches of
passages as it would the local encoder, and each ``encode`` call becomes one Ray Data job,
``from_items`` -> ``map_batches(embed_rows)`` -> back to the driver, in the original order. Reading,
chunking, the SQLite writes and the FAISS/BM25 indexes stay on the driver, so the store is written
exactly as by a local ingest: the same chunk ids (derived from content), and the vectors of the same
encoder (equal to float rounding with the fp32 backends; the int8 backend quantises activations per
batch, so its vectors depend slightly on which passages share a batch: cosine ~0.999).

The map is a plain function run as Ray tasks, not an actor class: each worker process loads the
encoder once, on its first task, and keeps it, and Ray keeps its worker processes between tasks and
between jobs, so one ingest of many 2,048-passage batches loads the model once per worker rather than
once per batch (an actor pool lives only as long as one job). Each task takes ``cpus_per_task`` CPUs and
runs the encoder on that many threads, so the cluster's CPUs are filled without oversubscribing them.

Addresses: ``None`` or ``"local"`` starts a Ray on this machine (every core, loopback only, no
dashboard) and stops it at :meth:`close`; a running Ray in this process is used as it is; anything else
(``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``) is given to ``ray.init`` to join an existing
cluster, whose worker machines need newsbot installed (see README, "Backfills on Ray").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from embeddings.encoder import Encoder, EncoderError, load_encoder

log = logging.getLogger(__name__)

LOCAL = "local"
# Rows per Ray task at most, and at least (unless the call is smaller): large enough that a task's
# scheduling and transfer cost is small next to encoding it, small enough that a 2,048-passage call
# spreads over a few dozen CPUs.
MAX_ROWS_PER_TASK = 256
MIN_ROWS_PER_TASK = 32


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
    """The ``map_batches`` function: a block of ``{"row", "text"}`` in, ``{"row", "vector"}`` out."""
    encoder = worker_encoder(model, backend, device, threads)
    vectors = encoder.encode([str(t) for t in rows["text"]], batch_size=batch_size)
    return {"row": rows["row"], "vector": vectors}


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
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = "a local Ray" if address in (None, LOCAL) else f"the Ray cluster at {address}"
                raise RayUnavailable(f"cannot start {where}: {err}") from None
        _quiet_ray_data()
        self.cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.cluster_cpus < self._cpus_per_task:
            self.close()
            raise RayUnavailable(
                f"the Ray cluster has {self.cluster_cpus} CPUs; each embedding task needs {self._cpus_per_task}"
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
            ray.init(address=address, **options)
        self._started = True

    # -- Encoder ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given: one Ray Data job."""
        import ray.data

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        slots = max(1, self.cluster_cpus // self._cpus_per_task)
        rows_per_task = min(MAX_ROWS_PER_TASK, max(MIN_ROWS_PER_TASK, math.ceil(len(texts) / slots)))
        dataset = ray.data.from_items(
            [{"row": i, "text": text} for i, text in enumerate(texts)],
            override_num_blocks=math.ceil(len(texts) / rows_per_task),
        ).map_batches(
            embed_rows,
            fn_kwargs={
                "model": self._model,
                "backend": self._backend,
                "device": self._device,
                "threads": self._cpus_per_task,
                "batch_size": batch_size,
            },
            batch_size=rows_per_task,
            batch_format="numpy",
            num_cpus=self._cpus_per_task,
            num_gpus=self._gpus_per_task,
        )
        filled = np.zeros(len(texts), dtype=bool)
        # Blocks may come back in any order; each row carries its position.
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            rows = np.asarray(batch["row"], dtype=np.int64)
            out[rows] = np.asarray(batch["vector"], dtype=np.float32)
            filled[rows] = True
        if not filled.all():
            raise EncoderError(f"Ray returned {int(filled.sum())} of {len(texts)} vectors")
        return out

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
