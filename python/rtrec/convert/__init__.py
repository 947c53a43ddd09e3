"""Converters from public data sets into rtrec's ``events.parquet`` / ``items.parquet``."""

from rtrec.convert.movielens import convert_movielens

__all__ = ["convert_movielens"]
