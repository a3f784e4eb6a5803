"""Dialogue data: readers per source -> chunks -> two-person segments -> windows -> splits.

    from qlearn.data import BuildConfig, Dataset, build_dataset, save_mqdialog, load_mqdialog
    ds = build_dataset("friends", "Ross")          # root defaults to $QLEARN_DATA_ROOT
"""
from .audit import AuditReport, audit_dataset, audit_path
from .mqdialog import load_mqdialog, save_mqdialog
from .pipeline import BuildConfig, Dataset, build_dataset, build_from_show, read_show
from .planted import planted_dataset
from .readers import DataError
from .sources import SOURCES, Source, all_responders, get_source
from .synthetic import synthetic_dataset
from .types import Turn, Window

__all__ = ["AuditReport", "audit_dataset", "audit_path", "BuildConfig", "Dataset", "DataError", "Turn", "Window", "all_responders",
           "build_dataset", "build_from_show", "load_mqdialog", "planted_dataset", "read_show", "save_mqdialog",
           "synthetic_dataset", "SOURCES", "Source", "get_source"]
