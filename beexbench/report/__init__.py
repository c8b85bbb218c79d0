"""The HTML report (and its Markdown/CSV tables), built from saved results only."""
from .build import build_report, default_tables_dir

__all__ = ["build_report", "default_tables_dir"]
