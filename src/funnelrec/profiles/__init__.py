"""Readable profiles: behavioural traits, trait cards, explanations, segments, similarity."""

from funnelrec.profiles.behaviour import BEHAVIOURS, behaviour_block, behaviour_stats
from funnelrec.profiles.cards import trait_cards
from funnelrec.profiles.describe import (
    Description,
    customer_profile,
    describe,
    full_profiles,
    popular_items,
    recommend_customer,
    similar_customers,
    similar_items,
)
from funnelrec.profiles.explain import explain, explain_items, faithfulness
from funnelrec.profiles.segments import assign_segments, fit_segments, segment_cards

__all__ = [
    "BEHAVIOURS",
    "Description",
    "assign_segments",
    "behaviour_block",
    "behaviour_stats",
    "customer_profile",
    "describe",
    "explain",
    "explain_items",
    "faithfulness",
    "fit_segments",
    "full_profiles",
    "popular_items",
    "recommend_customer",
    "segment_cards",
    "similar_customers",
    "similar_items",
    "trait_cards",
]
