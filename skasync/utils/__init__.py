"""Shared internal utilities (threads, progress, activation memory, discovery)."""

from skasync.utils.discovery import all_estimators

__all__ = ["all_estimators"]
