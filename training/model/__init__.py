"""`productlens train`: a classifier on top of the CPU baseline's features (train.py), the
Parquet reader (data.py) and the model directory it writes (export.py)."""
