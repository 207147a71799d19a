"""Offline outputs a person looks at: plots and the HTML report."""

from funnelrec.report.html import build_report
from funnelrec.report.plots import metrics_chart

__all__ = ["build_report", "metrics_chart"]
