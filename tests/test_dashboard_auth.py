"""The sign-in throttle's arithmetic and the password comparison, without Streamlit (the gate itself: test_dashboard_pages)."""

from __future__ import annotations

from pydantic import SecretStr

from dashboard.auth import SERVER_BACKOFF, SERVER_QUIET_RESET_S, SESSION_BACKOFF, Backoff, ServerThrottle, passwords_match


def test_waits_double_after_the_free_failures_up_to_the_cap() -> None:
    assert [Backoff(free=2, first_s=1.0, cap_s=5.0).delay_s(n) for n in range(1, 8)] == [0, 0, 1, 2, 4, 5, 5]
    assert [SESSION_BACKOFF.delay_s(n) for n in (1, 2, 3, 100)] == [0, 1, 2, SESSION_BACKOFF.cap_s]
    assert SERVER_BACKOFF.delay_s(SERVER_BACKOFF.free) == 0 < SERVER_BACKOFF.delay_s(SERVER_BACKOFF.free + 1)


def test_the_server_wait_grows_with_every_failure_and_is_forgotten_after_a_quiet_spell() -> None:
    now = [0.0]
    throttle = ServerThrottle(clock=lambda: now[0])
    assert throttle.wait_s() == 0
    for _ in range(SERVER_BACKOFF.free + 2):
        throttle.record_failure()
    assert throttle.wait_s() == SERVER_BACKOFF.delay_s(SERVER_BACKOFF.free + 2) == 2.0
    now[0] += 1.5
    assert throttle.wait_s() == 0.5
    now[0] += SERVER_QUIET_RESET_S + 1
    throttle.record_failure()  # the first failure after a quiet spell counts as the first again
    assert throttle.wait_s() == 0


def test_passwords_match_only_the_password() -> None:
    password = SecretStr("open sesame")
    assert passwords_match("open sesame", password)
    assert not passwords_match("open sesame ", password)
    assert not passwords_match("open", password)
    assert not passwords_match("", password)
    assert passwords_match("ünïcode ✓", SecretStr("ünïcode ✓"))
