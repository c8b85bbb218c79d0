"""Statistics for differences (issue 29): paired tests on the same inputs and the correction over
a family of comparisons. The lowest layer beside ``results``: imports numpy and scipy only."""
from .multiple import METHODS, adjust
from .paired import (ALPHA, Difference, McNemar, Ratio, SeedDifference, mcnemar, paired_ratio, per_input_means,
                     seed_difference, unpaired_proportions, unpaired_ratio)

__all__ = ["ALPHA", "METHODS", "Difference", "McNemar", "Ratio", "SeedDifference", "adjust", "mcnemar", "paired_ratio",
           "per_input_means", "seed_difference", "unpaired_proportions", "unpaired_ratio"]
