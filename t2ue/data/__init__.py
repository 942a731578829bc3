"""Image-text sets: the built-in offline sets, the user's own files, Karpathy JSON and WebDataset shards."""

from t2ue.data.sets import BUILTIN, ImageTextSet, PairDataset, load_dataset

__all__ = ["BUILTIN", "ImageTextSet", "PairDataset", "load_dataset"]
