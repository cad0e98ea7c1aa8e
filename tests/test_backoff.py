"""The reconnect delay: spread out, and never past its cap once the broker is back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import LinkSection
from edge_agent.link import backoff


@given(
    attempt=st.integers(0, 1000),
    lo=st.floats(0.1, 60),
    hi=st.floats(1, 3600),
    r=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_within_its_window(attempt: int, lo: float, hi: float, r: float) -> None:
    delay = backoff(attempt, lo, hi, rng=lambda: r)
    assert 0 < delay <= max(hi, lo / 2) + 1e-9
    assert delay >= min(lo / 2, hi) - 1e-9


def test_defaults_bring_the_backlog_moving_within_ten_seconds() -> None:
    link = LinkSection()
    worst = max(
        backoff(n, link.reconnect_min_s, link.reconnect_max_s, rng=lambda: 0.999999)
        for n in range(50)
    )
    assert worst < 10


def test_agents_returning_together_are_spread_over_the_window() -> None:
    draws = [backoff(10, 1.0, 8.0, rng=iter([r / 100]).__next__) for r in range(100)]
    assert min(draws) < 1.0
    assert max(draws) > 7.5
