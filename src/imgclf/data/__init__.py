"""Files → photos with labels: scanning label folders, splits within each label, copies, augmented views."""

from imgclf.data.scan import Dataset, Photo, looks_like_image, normalisation_warnings, scan_labelled
from imgclf.data.splits import SPLITS, SplitMemory, assign_splits, ensure_training_photos, hash_position, split_sizes

__all__ = ["SPLITS", "Dataset", "Photo", "SplitMemory", "assign_splits", "ensure_training_photos", "hash_position",
           "looks_like_image", "normalisation_warnings", "scan_labelled", "split_sizes"]
