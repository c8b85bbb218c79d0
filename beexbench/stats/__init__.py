"""Statistics for differences (issue 29): paired tests on the same inputs and the correction over
a family of comparisons. The lowest layer beside ``results``: imports numpy and scipy only."""
from .multiple import METHODS, adjust
from .paired import ALPHA, McNemar, Ratio, SeedDifference, mcnemar, paired_ratio, seed_difference

__all__ = ["ALPHA", "METHODS", "McNemar", "Ratio", "SeedDifference", "adjust", "mcnemar", "paired_ratio",
           "seed_difference"]
