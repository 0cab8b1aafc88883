"""Training-set building: labelled catalogs in, Parquet splits and a dataset card out (issue 13)."""
