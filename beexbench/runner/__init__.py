"""The runner: train what is missing, measure every cell, write results as cells finish."""
from .run import RunSummary, run_suite
from .models import obtain_model, model_store

__all__ = ["run_suite", "RunSummary", "obtain_model", "model_store"]
