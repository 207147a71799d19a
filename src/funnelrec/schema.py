"""Canonical event columns, the action vocabulary and the package's typed errors.

Imports nothing from the package: every other module may depend on it.
"""

from __future__ import annotations

REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "timestamp", "action", "item_id")
OPTIONAL_COLUMNS: tuple[str, ...] = ("session_id", "category", "brand", "price")
CANONICAL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

# The funnel's four canonical actions, in funnel order. Any other action found in the data
# (fav, checkout, ...) is kept as a type of its own, appended after these.
CANONICAL_ACTIONS: tuple[str, ...] = ("view", "add_cart", "remove_cart", "purchase")
VIEW, ADD_CART, REMOVE_CART, PURCHASE = range(4)

# Raw spellings seen in public logs. Only the exact spellings below are translated; anything
# else is kept under its own (lower-cased) name unless the user maps it with --action.
ACTION_SYNONYMS: dict[str, str] = {
    "view": "view",
    "pv": "view",
    "page_view": "view",
    "pageview": "view",
    "product_view": "view",
    "click": "view",
    "detail": "view",
    "cart": "add_cart",
    "add_cart": "add_cart",
    "addtocart": "add_cart",
    "add_to_cart": "add_cart",
    "addtobasket": "add_cart",
    "add_to_basket": "add_cart",
    "remove_cart": "remove_cart",
    "remove_from_cart": "remove_cart",
    "removefromcart": "remove_cart",
    "remove_from_basket": "remove_cart",
    "purchase": "purchase",
    "buy": "purchase",
    "transaction": "purchase",
    "order": "purchase",
}


class FunnelrecError(Exception):
    """Base class for errors a user can act on (bad input, unfitted model, ...)."""


class InputError(FunnelrecError):
    """A problem with an input file, worded so the user can find and fix it.

    Carries the file and, where known, the line, column, what was expected and what was found.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        self.path, self.line, self.column = path, line, column
        self.expected, self.found = expected, found
        where = []
        if path is not None:
            where.append(f"file {path}")
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        text = message + (f" ({', '.join(where)})" if where else "")
        if expected is not None:
            text += f"; expected: {expected}"
        if found is not None:
            text += f"; found: {_clip(found)}"
        super().__init__(text)


class NotFittedError(FunnelrecError):
    """A model method that needs learned state was called before `fit`."""


def _clip(text: str, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
