"""Compare two runs (or two merged result sets) cell by cell, with paired tests and a gate
(``beexbench compare BASE NEW --fail-on ...``; issue 29). Above ``results`` and ``stats``."""
from .api import CellComparison, Comparison, compare
from .deltas import Delta
from .thresholds import Threshold, parse_fail_on

__all__ = ["CellComparison", "Comparison", "Delta", "Threshold", "compare", "parse_fail_on"]
