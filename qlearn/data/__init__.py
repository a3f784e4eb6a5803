"""Dialogue data: readers per source -> chunks -> two-person segments -> windows -> splits."""
from .types import Turn, Window

__all__ = ["Turn", "Window"]
