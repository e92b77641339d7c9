"""Hypothesis strategies several test modules share: arbitrary JSON values.

How many examples each property runs is the profile's business (tests/conftest.py: fewer
locally, the full count when CI=true), not each test's.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

scalars: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
