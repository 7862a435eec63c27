"""Model files shipped with newsbot (installed as the ``newsbot_models`` package): one folder per model,
each with a model card (README.md), a manifest (model.json) and its license. See embeddings/onnx_model.py."""
