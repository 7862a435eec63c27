"""OnnxEncoder against TorchEncoder: same tokens, same vectors (fp32) or nearly (int8); the shipped int8
file is what the export recipe makes from the weights; and the fp32 cache is built from scratch once,
reused, repaired and shared safely between concurrent exporters.

The fp32 file is exported once per test session into a temporary cache (not ~/.cache), which is
what proves the export path works on a clean machine; the other tests reuse it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import embeddings.onnx_export as onnx_export
from embeddings import onnx_model
from embeddings.encoder import Encoder, EncoderError, load_encoder, model_path
from embeddings.onnx_encoder import OnnxEncoder
from embeddings.onnx_export import cache_folder, ensure_exported

REPO = Path(__file__).resolve().parent.parent
# The upstream all-MiniLM-L6-v2 weights' sha256 starts so (see shared/NOTES.md).
WEIGHTS_HASH = "53aa51172d142c89"

SENTENCES = [
    "Shares in BP rose 3% after the oil giant reported record third-quarter profits of $4.1bn.",
    "The Bank of England held interest rates at 4.75%, citing stubborn inflation in the services sector.",
    "Who won the Champions League final in Istanbul?",
    "Apple unveiled a thinner iPhone with a titanium frame and a faster A18 chip on Tuesday.",
    "Flooding forced hundreds of families from their homes in Valencia, Spain, after a month's rain fell.",
    "The prime minister said the government would not raise income tax, national insurance or VAT.",
    "Scientists at CERN say the upgraded Large Hadron Collider could reveal new physics.",
    "Manchester United sacked their manager after a 3-0 defeat at home to Brighton.",
    "A cyber-attack on the NHS supplier disrupted blood tests at hospitals across south-east London.",
    "Tesla's quarterly deliveries fell for the first time in four years amid rising competition from BYD.",
    "Beyoncé's new album topped the charts in 12 countries within a week of release.",
    "The Tokyo stock market (Nikkei 225) closed 1.2% higher; the yen weakened to ¥151 per dollar.",
    "Ukraine and Russia exchanged 95 prisoners of war in a deal brokered by the United Arab Emirates.",
    "rain",
    "What did the chancellor announce about fuel duty?",
    "Wildfires in California have burned more than 40,000 acres and destroyed at least 1,000 structures.",
    "The film, directed by Greta Gerwig, earned $1.4 billion worldwide and became Warner Bros' biggest hit.",
    "Researchers found that microplastics were present in every human placenta tested.",
    "Mr. O'Neill — a former Goldman Sachs economist — coined the term BRIC in 2001.",
    "北京 hosts the Winter Olympics; Zürich, São Paulo and Kraków bid for future events. 🚀",
    "   leading and trailing whitespace, plus\ttabs\nand newlines   ",
    "COVID-19 cases rose by 12,345 (up 7.8% week-on-week), the UKHSA said on 03/11/2024.",
]
# Far past 256 word pieces: encode must truncate like sentence-transformers, count_tokens must not.
LONG = " ".join(SENTENCES) * 4

# Measured on the sentences above (x86-64, onnxruntime 1.32): fp32 cosine to torch >= 0.99999;
# int8 mean 0.992, min 0.987 ("rain"; one-word inputs fare worst), passages of the sample article
# 0.99. The bounds leave a little room for other CPUs' float rounding, not for a worse recipe.
FP32_MIN_COSINE = 0.9999
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.98


def _passages() -> list[str]:
    """~200-word windows of the article shipped in samples/: real news prose, as ingest chunks it."""
    words = next((REPO / "samples").glob("*.txt")).read_text(encoding="utf-8").split()
    return [" ".join(words[i : i + 200]) for i in range(0, len(words), 200)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_encoder() -> Encoder:
    # The same cached instance as conftest's `encoder`, so the suite loads torch's model once.
    return load_encoder(backend="torch")


@pytest.fixture(scope="module")
def fp32(cache: Path) -> OnnxEncoder:
    return OnnxEncoder(quantized=False, cache_dir=cache)


@pytest.fixture(scope="module")
def int8() -> OnnxEncoder:
    """The default: the file shipped in models/minilm/."""
    return OnnxEncoder()


@pytest.fixture(scope="module")
def exported_int8(cache: Path, fp32: OnnxEncoder) -> OnnxEncoder:
    """int8 quantised here from the weights, as a model folder of one's own is (the weights' folder
    given as a path): the recipe scripts/export_encoder.py ran to build the shipped file."""
    return OnnxEncoder(str(model_path("all-MiniLM-L6-v2")), quantized=True, cache_dir=cache)


@pytest.fixture(scope="module")
def reference(torch_encoder: Encoder) -> np.ndarray:
    return torch_encoder.encode([*SENTENCES, LONG])


def test_attributes_match_torch(fp32: OnnxEncoder, int8: OnnxEncoder, torch_encoder: Encoder) -> None:
    for enc in (fp32, int8):
        assert (enc.name, enc.dim, enc.max_tokens) == (torch_encoder.name, 384, 256)
        assert torch_encoder.max_tokens == 256


def test_shipped_file_is_the_export_of_the_weights(int8: OnnxEncoder, exported_int8: OnnxEncoder) -> None:
    """models/minilm/model_int8.onnx is byte for byte what the recipe makes from the upstream weights
    (with the pinned torch and onnxruntime), so its vectors are those newsbot made before it shipped
    the file, and stores built then keep working."""
    assert int8.onnx_path == onnx_model.models_root() / "minilm" / "model_int8.onnx"
    assert exported_int8.onnx_path.read_bytes() == int8.onnx_path.read_bytes()
    assert int8.identity == f"all-MiniLM-L6-v2 int8 onnx-sha256:{exported_int8.identity.rsplit(':')[-1]}"
    np.testing.assert_array_equal(int8.encode(SENTENCES), exported_int8.encode(SENTENCES))
    manifest = onnx_model.read_manifest(onnx_model.model_dir("minilm"))
    assert manifest["source"]["weights_sha256"].startswith(WEIGHTS_HASH)


def test_a_damaged_model_file_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    shutil.copytree(onnx_model.model_dir("minilm"), models / "minilm")
    onnx = models / "minilm" / "model_int8.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the weights: the file still loads, but is wrong
    onnx.write_bytes(bytes(data))
    monkeypatch.setattr(onnx_model, "models_root", lambda: models)
    with pytest.raises(EncoderError, match=r"model_int8.onnx is damaged .*restore it") as err:
        OnnxEncoder()
    assert "\n" not in str(err.value)
    onnx.unlink()
    with pytest.raises(EncoderError, match=r"cannot read model file .*model_int8.onnx"):
        OnnxEncoder()


def test_export_from_scratch_lays_out_the_cache(
    cache: Path, fp32: OnnxEncoder, exported_int8: OnnxEncoder
) -> None:
    folder = cache / f"model-{WEIGHTS_HASH}"
    assert fp32.onnx_path == folder / "model.onnx"
    assert exported_int8.onnx_path == folder / "model_int8.onnx"
    # int8 is about a quarter of fp32; no temp files are left behind.
    assert exported_int8.onnx_path.stat().st_size < fp32.onnx_path.stat().st_size / 3
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "model.onnx", "model_int8.onnx"]


def test_env_var_selects_cache_and_reuses_export(
    cache: Path, fp32: OnnxEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(onnx_export.CACHE_ENV, str(cache))
    before = fp32.onnx_path.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("a cached, current export must not be redone")

    monkeypatch.setattr(onnx_export, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_export, "_quantize", no_export)
    again = OnnxEncoder(quantized=False)
    assert again.onnx_path == fp32.onnx_path
    assert again.onnx_path.stat().st_mtime_ns == before


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_vectors_are_unit_float32_rows(which: str, request: pytest.FixtureRequest) -> None:
    enc: OnnxEncoder = request.getfixturevalue(which)
    vectors = enc.encode([*SENTENCES, "", LONG])
    assert vectors.shape == (len(SENTENCES) + 2, 384)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_fp32_matches_torch(fp32: OnnxEncoder, reference: np.ndarray) -> None:
    cosines = _cosines(fp32.encode([*SENTENCES, LONG], batch_size=8), reference)
    assert cosines.min() >= FP32_MIN_COSINE, cosines


def test_int8_close_to_torch(int8: OnnxEncoder, reference: np.ndarray) -> None:
    cosines = _cosines(int8.encode([*SENTENCES, LONG]), reference)
    assert cosines.mean() >= INT8_MEAN_COSINE, cosines
    assert cosines.min() >= INT8_MIN_COSINE, cosines


def test_passages_close_to_torch(fp32: OnnxEncoder, int8: OnnxEncoder, torch_encoder: Encoder) -> None:
    passages = _passages()
    reference = torch_encoder.encode(passages)
    assert _cosines(fp32.encode(passages), reference).min() >= FP32_MIN_COSINE
    assert _cosines(int8.encode(passages), reference).min() >= INT8_MIN_COSINE


def test_long_text_is_truncated_like_torch(
    fp32: OnnxEncoder, int8: OnnxEncoder, torch_encoder: Encoder, reference: np.ndarray
) -> None:
    assert fp32.count_tokens([LONG])[0] > 4 * fp32.max_tokens
    # The same cut as sentence-transformers' (256 including [CLS] and [SEP]), not tokenizer.json's 128:
    # a different cut would change the vector well beyond rounding.
    ids = fp32._tokenizer.encode(LONG).ids
    assert (len(ids), ids[0], ids[-1]) == (256, 101, 102)  # [CLS] ... [SEP]
    assert float(fp32.encode([LONG])[0] @ reference[-1]) >= FP32_MIN_COSINE
    assert float(int8.encode([LONG])[0] @ reference[-1]) >= INT8_MIN_COSINE


def test_count_tokens_equals_torch(fp32: OnnxEncoder, int8: OnnxEncoder, torch_encoder: Encoder) -> None:
    texts = [*SENTENCES, "", LONG, "unaffable antidisestablishmentarianism"]
    expected = torch_encoder.count_tokens(texts)
    assert fp32.count_tokens(texts) == expected
    assert int8.count_tokens(texts) == expected
    assert expected[SENTENCES.index("rain")] == 1
    assert expected[len(SENTENCES)] == 0


def test_empty_input(fp32: OnnxEncoder, int8: OnnxEncoder) -> None:
    for enc in (fp32, int8):
        empty = enc.encode([])
        assert empty.shape == (0, 384)
        assert empty.dtype == np.float32
        assert enc.count_tokens([]) == []


def test_bucketing_keeps_input_order(fp32: OnnxEncoder) -> None:
    texts = [*SENTENCES, LONG, ""]
    one_by_one = np.stack([fp32.encode([t])[0] for t in texts])
    for batch_size in (3, 32):
        batched = fp32.encode(texts, batch_size=batch_size)
        assert _cosines(batched, one_by_one).min() >= 0.99999
    reversed_rows = fp32.encode(texts[::-1], batch_size=4)[::-1]
    assert _cosines(reversed_rows, one_by_one).min() >= 0.99999


def test_concurrent_encode_is_safe(int8: OnnxEncoder) -> None:
    expected = int8.encode(SENTENCES, batch_size=8)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(int8.encode(SENTENCES, batch_size=8))
        except BaseException as exc:  # surfaced below: a thread's exception would be lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 20
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_exact_int8_kernels_give_the_same_vectors(int8: OnnxEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """x86 CPUs without VNNI run int8 on onnxruntime's U8U8 kernels (session.x64quantprecision), so a
    saturating U8S8 multiply cannot distort the vectors; those kernels must agree with the default ones."""
    monkeypatch.setenv(onnx_model.X64_PRECISION_ENV, "1")
    assert onnx_model.needs_x64_precision()
    exact = OnnxEncoder()
    assert _cosines(exact.encode(SENTENCES), int8.encode(SENTENCES)).min() >= 0.9999
    monkeypatch.setenv(onnx_model.X64_PRECISION_ENV, "0")
    assert not onnx_model.needs_x64_precision()


def test_concurrent_exporters_export_once(
    cache: Path, fp32: OnnxEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exporters racing on a folder with a broken leftover file: one exports, the other waits and
    reuses it. flock excludes separate opens of the lock file even within one process, so threads
    stand in for processes; the slow fake export widens the race window."""
    folder = tmp_path / "model-x"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"half a file from a crashed export")
    calls: list[int] = []

    def slow_export(model_dir: Path, target: Path, source_hash: str) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)
        tmp = target.with_suffix(".partial")
        shutil.copyfile(fp32.onnx_path, tmp)
        os.replace(tmp, target)

    monkeypatch.setattr(onnx_export, "_export_fp32", slow_export)
    model_dir = model_path("all-MiniLM-L6-v2")
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(ensure_exported(model_dir, folder, quantized=False)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert paths == [folder / "model.onnx"] * 2
    assert (folder / "model.onnx").read_bytes() == fp32.onnx_path.read_bytes()


def test_stale_recipe_is_exported_again(
    fp32: OnnxEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model-y"
    folder.mkdir()
    shutil.copyfile(fp32.onnx_path, folder / "model.onnx")
    assert onnx_export._recipe_of(folder / "model.onnx") == onnx_export._RECIPE
    monkeypatch.setattr(onnx_export, "_RECIPE", onnx_export._RECIPE + " changed")
    exported: list[Path] = []
    monkeypatch.setattr(onnx_export, "_export_fp32", lambda model_dir, target, h: exported.append(target))
    ensure_exported(model_path("all-MiniLM-L6-v2"), folder, quantized=False)
    assert exported == [folder / "model.onnx"]


def test_cache_folder_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model_dir = model_path("all-MiniLM-L6-v2")
    monkeypatch.delenv(onnx_export.CACHE_ENV, raising=False)
    home = Path("~/.cache/newsbot/onnx").expanduser()
    assert cache_folder(model_dir) == home / f"{model_dir.name}-{WEIGHTS_HASH}"
    monkeypatch.setenv(onnx_export.CACHE_ENV, str(tmp_path))
    assert cache_folder(model_dir) == tmp_path / f"{model_dir.name}-{WEIGHTS_HASH}"
    assert cache_folder(model_dir, tmp_path / "explicit").parent == tmp_path / "explicit"


def test_a_text_gets_the_same_int8_vector_whatever_it_is_batched_with(int8: OnnxEncoder) -> None:
    # int8 activations are quantised with one scale per batch: batched, a vector moved with its
    # company (cosine ~0.996), and two builds of one store answered differently.
    passages = _passages()
    alone = int8.encode(passages[:1])
    for company in (passages[1:3], [LONG, *SENTENCES]):
        np.testing.assert_array_equal(int8.encode([passages[0], *company], batch_size=32)[:1], alone)
    question = "Who opposed the ABM amendment?"
    np.testing.assert_array_equal(int8.encode([question, *passages])[:1], int8.encode([question]))
