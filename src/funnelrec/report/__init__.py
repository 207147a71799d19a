"""Offline outputs a person looks at: plots and (later) the HTML report."""

from funnelrec.report.plots import metrics_chart

__all__ = ["metrics_chart"]
