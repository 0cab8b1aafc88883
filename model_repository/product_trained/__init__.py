"""Code of the trainable CPU model (`productlens train`); trained versions live beside it as
their own Triton models (`model_repository/<name>/`), see engine.py."""
