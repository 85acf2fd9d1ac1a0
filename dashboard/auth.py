"""The optional password gate: with LINEGUARD_DASHBOARD_PASSWORD set, a session sees no page until it gives it.

Wrong passwords slow guessing down twice over (see docs/design.md, "Security boundaries"): each
session waits longer after each wrong password in a row, and one server-wide tally, which a new
session does not reset, makes every session wait once wrong passwords pile up anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from pydantic import SecretStr

# Session-state keys.
SIGNED_IN_KEY = "lineguard_signed_in"
SESSION_FAILURES_KEY = "lineguard_sign_in_failures"
SESSION_NEXT_ATTEMPT_KEY = "lineguard_sign_in_next_attempt"
#: Server-wide wrong passwords are forgotten after this many seconds without one.
SERVER_QUIET_RESET_S = 15 * 60.0


@dataclass(frozen=True)
class Backoff:
    """How long to wait before the next attempt is checked, after ``failures`` wrong passwords."""

    #: Wrong passwords that cost no wait (a typo should not).
    free: int
    #: Wait after the first wrong password that costs one; each further one doubles it.
    first_s: float
    #: Longest wait.
    cap_s: float

    def delay_s(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return min(self.cap_s, self.first_s * 2.0 ** (failures - self.free - 1))


#: Per session, over its wrong passwords in a row: 0, 1, 2, 4 ... 60 s.
SESSION_BACKOFF = Backoff(free=1, first_s=1.0, cap_s=60.0)
#: Per server, over the wrong passwords of all sessions: 0, 0, 0, 1, 2, 4 ... 30 s. Lower than the
#: session's cap because it slows the legitimate users down too.
SERVER_BACKOFF = Backoff(free=3, first_s=1.0, cap_s=30.0)


class ServerThrottle:
    """The wrong passwords of every session of this server process, and when the next attempt may be checked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: Seconds of a monotonic clock; sessions keep their own waits on the same clock.
        self.clock = clock
        self._lock = threading.Lock()  # sessions run in threads of their own
        self._failures = 0
        self._last_failure_at = -math.inf
        self._next_attempt_at = -math.inf

    def wait_s(self) -> float:
        """Seconds until an attempt of any session may be checked (0: now)."""
        with self._lock:
            return max(0.0, self._next_attempt_at - self.clock())

    def record_failure(self) -> None:
        """Count a wrong password of any session and push back the next attempt."""
        with self._lock:
            now = self.clock()
            if now - self._last_failure_at > SERVER_QUIET_RESET_S:
                self._failures = 0
            self._failures += 1
            self._last_failure_at = now
            self._next_attempt_at = now + SERVER_BACKOFF.delay_s(self._failures)


@st.cache_resource(show_spinner=False)
def server_throttle() -> ServerThrottle:
    """The one throttle of this server process, shared by all its sessions."""
    return ServerThrottle()


def passwords_match(given: str, password: SecretStr) -> bool:
    """Whether ``given`` is the password, in a time that tells neither how much of it nor how long it is."""
    given_digest = hashlib.sha256(given.encode()).digest()
    expected_digest = hashlib.sha256(password.get_secret_value().encode()).digest()
    return hmac.compare_digest(given_digest, expected_digest)


def signed_in(password: SecretStr | None) -> bool:
    """True when no password is required or this session gave it. Shows nothing."""
    return password is None or bool(st.session_state.get(SIGNED_IN_KEY, False))


def sign_in_form(password: SecretStr) -> None:
    """The sign-in form; a right password (when no wait is due) signs the session in and reruns the app."""
    st.title("lineguard")
    with st.form("sign_in"):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    throttle = server_throttle()
    now = throttle.clock()
    wait_s = max(throttle.wait_s(), st.session_state.get(SESSION_NEXT_ATTEMPT_KEY, -math.inf) - now)
    if wait_s > 0:
        # Neither checked nor counted: waiting out the delay is the only way on.
        st.error(f"Too many wrong passwords: try again in {math.ceil(wait_s)} s.")
        return
    if passwords_match(given, password):
        st.session_state[SIGNED_IN_KEY] = True
        st.session_state.pop(SESSION_FAILURES_KEY, None)
        st.session_state.pop(SESSION_NEXT_ATTEMPT_KEY, None)
        st.rerun()
    failures = st.session_state.get(SESSION_FAILURES_KEY, 0) + 1
    st.session_state[SESSION_FAILURES_KEY] = failures
    st.session_state[SESSION_NEXT_ATTEMPT_KEY] = now + SESSION_BACKOFF.delay_s(failures)
    throttle.record_failure()
    st.error("Wrong password.")
