"""The HTML report, built from saved results only."""
from .build import build_report

__all__ = ["build_report"]
