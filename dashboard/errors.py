"""Exceptions raised by the dashboard on purpose."""

from __future__ import annotations


class DashboardError(Exception):
    """Base class of every error the dashboard raises on purpose."""


class SettingsError(DashboardError, ValueError):
    """An environment variable holds a value the dashboard cannot use; the message names the variable."""
