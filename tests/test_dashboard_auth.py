"""The sign-in throttle's arithmetic, the password comparison and named users' hashes, without
Streamlit (the gate itself: test_dashboard_pages)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from dashboard.auth import CLIENT_BACKOFF, CLIENT_QUIET_RESET_S, SESSION_BACKOFF, Backoff, ClientThrottle, passwords_match
from dashboard.errors import SettingsError
from dashboard.users import authenticate, hash_password, load_users, parse_users, password_matches, with_user


def test_waits_double_after_the_free_failures_up_to_the_cap() -> None:
    assert [Backoff(free=2, first_s=1.0, cap_s=5.0).delay_s(n) for n in range(1, 8)] == [0, 0, 1, 2, 4, 5, 5]
    assert [SESSION_BACKOFF.delay_s(n) for n in (1, 2, 3, 100)] == [0, 1, 2, SESSION_BACKOFF.cap_s]
    assert CLIENT_BACKOFF.delay_s(CLIENT_BACKOFF.free) == 0 < CLIENT_BACKOFF.delay_s(CLIENT_BACKOFF.free + 1)


def test_a_client_waits_more_with_every_failure_others_do_not_and_a_quiet_spell_forgets() -> None:
    now = [0.0]
    throttle = ClientThrottle(clock=lambda: now[0])
    assert throttle.wait_s("10.0.0.1") == 0
    for _ in range(CLIENT_BACKOFF.free + 2):
        throttle.record_failure("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == CLIENT_BACKOFF.delay_s(CLIENT_BACKOFF.free + 2) == 2.0
    assert throttle.wait_s("10.0.0.2") == 0  # one guesser slows nobody else
    now[0] += 1.5
    assert throttle.wait_s("10.0.0.1") == 0.5
    now[0] += CLIENT_QUIET_RESET_S + 1
    throttle.record_failure("10.0.0.1")  # the first failure after a quiet spell counts as the first again
    assert throttle.wait_s("10.0.0.1") == 0


def test_passwords_match_only_the_password() -> None:
    password = SecretStr("open sesame")
    assert passwords_match("open sesame", password)
    assert not passwords_match("open sesame ", password)
    assert not passwords_match("open", password)
    assert not passwords_match("", password)
    assert passwords_match("ünïcode ✓", SecretStr("ünïcode ✓"))


def test_named_users_sign_in_with_their_own_password_only(tmp_path) -> None:
    alice, bob = hash_password("alice's secret"), hash_password("bob's secret")
    assert alice != hash_password("alice's secret")  # salted
    assert password_matches("alice's secret", alice) and not password_matches("bob's secret", alice)
    users_file = tmp_path / "users"
    users_file.write_text(with_user(users_file, "alice", hash_password("old")))
    users_file.write_text(with_user(users_file, "alice", alice))  # a new password replaces the entry
    users = load_users(users_file, f"bob:{bob}")
    assert users == {"alice": alice, "bob": bob}
    assert authenticate(users, "alice", "alice's secret") == "alice"
    assert authenticate(users, "alice", "bob's secret") is None
    assert authenticate(users, "carol", "alice's secret") is None
    with pytest.raises(SettingsError, match="line 2: not a 'name:scrypt"):
        parse_users(f"alice:{alice}\nbob:plaintext", "users")
