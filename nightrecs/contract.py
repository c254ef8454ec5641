"""The raw data contract's event vocabulary: the one definition every layer shares.

``EVENT_TYPES`` is ordered weakest to strongest: an item a user both viewed and bought is
a purchase in their history. ``EVENT_WEIGHTS`` weigh touches in the feature job's sums.
A ``rating`` event carries its stars in ``value``; a rating at or below the run's
``dislike_rating`` is a dislike: kept in the user's history (the model sees it), never a
positive (no training target, no popularity, no co-occurrence, no evaluation hit).
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "rating", "purchase")
EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "rating": 3.0, "purchase": 4.0}
EXCLUDING_TYPES: tuple[str, ...] = ("rating", "purchase")  # never recommended again once done


def strength(event_type: str) -> int:
    """0-based rank of an event type, weakest first; raises on a type outside the contract."""
    try:
        return EVENT_TYPES.index(event_type)
    except ValueError:
        raise ValueError(f"event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}") from None
