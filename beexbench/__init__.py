"""beexbench: train BEExformer and its rivals, measure them honestly, report.

The Python API comes first; the ``beexbench`` CLI is a thin shell over it.
"""
__version__ = "0.1.0"
