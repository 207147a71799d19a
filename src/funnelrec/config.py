"""Typed settings. Frozen dataclasses passed explicitly; the resolved config is saved with outputs.

Imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class IngestConfig:
    """How raw files become canonical events and sequences.

    Parameters
    ----------
    layout : name of a known layout, or "auto" to detect it from the header and first rows.
    column_map : canonical column -> column name in the file (overrides the layout's map);
        an empty name leaves an optional column (category, brand, price, ...) out.
    action_map : raw action value -> canonical action name (overrides built-in synonyms).
    strict_actions : reject rows whose action is not canonical or mapped, instead of keeping
        them as an extra action type.
    session_gap_minutes : inactivity that ends a session when the data carries no session ids.
    max_history : keep only each customer's most recent N events (0 = keep all); counted.
    timestamp_unit : "auto", "s", "ms", "us" or "iso": how to read the timestamp column.
    memory_limit : DuckDB memory limit; larger inputs spill to disk instead of failing.
    """

    layout: str = "auto"
    column_map: dict[str, str] = field(default_factory=dict)
    action_map: dict[str, str] = field(default_factory=dict)
    strict_actions: bool = False
    session_gap_minutes: float = 30.0
    max_history: int = 0
    timestamp_unit: str = "auto"
    memory_limit: str = "2GB"
    delimiter: str | None = None
    has_header: bool | None = None

    def __post_init__(self) -> None:
        if not self.session_gap_minutes > 0:
            raise ValueError(f"session gap must be above 0 minutes, not {self.session_gap_minutes}")
        if self.max_history < 0:
            raise ValueError(f"max_history must be 0 (all) or more, not {self.max_history}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SplitConfig:
    """How events are divided into training, validation and test.

    Parameters
    ----------
    protocol : "loo" (each customer's last target event is test, the one before validation)
        or "temporal" (global cut times: validation and test are each customer's first target
        event after the cut).
    target : "any" (next interaction) or "purchase" (next purchase; falls back to add_cart
        when purchases are rarer than `min_target_share` of events).
    valid_quantile, test_quantile : for "temporal", the cut times as quantiles of event times.
    """

    protocol: str = "loo"
    target: str = "purchase"
    valid_quantile: float = 0.8
    test_quantile: float = 0.9
    min_target_share: float = 0.005
    min_target_customers: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
