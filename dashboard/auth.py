"""The optional sign-in gate: with named users (dashboard.users) or one shared password
(LINEGUARD_DASHBOARD_PASSWORD) configured, a session sees no page until it signs in.

With named users, a session signs in as one of them, and its reviews are signed with that name;
the shared password then opens nothing. Wrong passwords slow guessing down twice over (see
docs/design.md, "Security boundaries"): each session waits longer after each wrong password in a
row, and each client (by its address, over all its sessions, which a new session does not reset)
waits once its wrong passwords pile up; one guesser slows no other client.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st
from pydantic import SecretStr

from dashboard.users import authenticate

# Session-state keys.
SIGNED_IN_KEY = "lineguard_signed_in"
USER_KEY = "lineguard_user"
SESSION_FAILURES_KEY = "lineguard_sign_in_failures"
SESSION_NEXT_ATTEMPT_KEY = "lineguard_sign_in_next_attempt"
#: A client's wrong passwords are forgotten after this many seconds without one.
CLIENT_QUIET_RESET_S = 15 * 60.0
#: Clients whose wrong passwords are remembered at once; beyond it the quiet ones are forgotten first.
MAX_CLIENTS = 10_000


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
#: Per client address, over the wrong passwords of all its sessions: 0, 0, 0, 1, 2, 4 ... 60 s.
CLIENT_BACKOFF = Backoff(free=3, first_s=1.0, cap_s=60.0)


@dataclass
class _Tally:
    failures: int = 0
    last_failure_at: float = -math.inf
    next_attempt_at: float = -math.inf


class ClientThrottle:
    """The wrong passwords of each client of this server process, and when its next attempt may be checked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: Seconds of a monotonic clock; sessions keep their own waits on the same clock.
        self.clock = clock
        self._lock = threading.Lock()  # sessions run in threads of their own
        self._tallies: dict[str, _Tally] = {}

    def wait_s(self, client: str) -> float:
        """Seconds until an attempt of `client` may be checked (0: now)."""
        with self._lock:
            tally = self._tallies.get(client)
            return 0.0 if tally is None else max(0.0, tally.next_attempt_at - self.clock())

    def record_failure(self, client: str) -> None:
        """Count a wrong password of `client` and push back its next attempt."""
        with self._lock:
            now = self.clock()
            tally = self._tallies.setdefault(client, _Tally())
            if now - tally.last_failure_at > CLIENT_QUIET_RESET_S:
                tally.failures = 0
            tally.failures += 1
            tally.last_failure_at = now
            tally.next_attempt_at = now + CLIENT_BACKOFF.delay_s(tally.failures)
            if len(self._tallies) > MAX_CLIENTS:
                self._forget_quietest()

    def _forget_quietest(self) -> None:
        by_quiet = sorted(self._tallies, key=lambda client: self._tallies[client].last_failure_at)
        for client in by_quiet[: len(self._tallies) - MAX_CLIENTS]:
            del self._tallies[client]


@st.cache_resource(show_spinner=False)
def client_throttle() -> ClientThrottle:
    """The one throttle of this server process, shared by all its sessions."""
    return ClientThrottle()


def client_address() -> str:
    """The address the session's WebSocket comes from; "local" when Streamlit does not tell (a browser
    on this machine, or a test's mock)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else "local"


def passwords_match(given: str, password: SecretStr) -> bool:
    """Whether ``given`` is the password, in a time that tells neither how much of it nor how long it is."""
    given_digest = hashlib.sha256(given.encode()).digest()
    expected_digest = hashlib.sha256(password.get_secret_value().encode()).digest()
    return hmac.compare_digest(given_digest, expected_digest)


def gate_needed(password: SecretStr | None, users: Mapping[str, str]) -> bool:
    """Whether sessions must sign in: named users or a shared password are configured."""
    return bool(users) or password is not None


def signed_in(password: SecretStr | None, users: Mapping[str, str]) -> bool:
    """True when no sign-in is required or this session signed in. Shows nothing."""
    return not gate_needed(password, users) or bool(st.session_state.get(SIGNED_IN_KEY, False))


def signed_in_user() -> str | None:
    """The named user this session signed in as; None without named users."""
    return st.session_state.get(USER_KEY)


def sign_in_form(password: SecretStr | None, users: Mapping[str, str]) -> None:
    """The sign-in form (a user name too, with named users); right credentials (when no wait is due)
    sign the session in and rerun the app."""
    st.title("lineguard")
    with st.form("sign_in"):
        name = st.text_input("User", key="sign_in_user") if users else None
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    throttle = client_throttle()
    client = client_address()
    now = throttle.clock()
    wait_s = max(throttle.wait_s(client), st.session_state.get(SESSION_NEXT_ATTEMPT_KEY, -math.inf) - now)
    if wait_s > 0:
        # Neither checked nor counted: waiting out the delay is the only way on.
        st.error(f"Too many wrong passwords: try again in {math.ceil(wait_s)} s.")
        return
    if users:
        user = authenticate(users, (name or "").strip(), given)
        accepted = user is not None
    else:
        user, accepted = None, password is not None and passwords_match(given, password)
    if accepted:
        st.session_state[SIGNED_IN_KEY] = True
        st.session_state[USER_KEY] = user
        st.session_state.pop(SESSION_FAILURES_KEY, None)
        st.session_state.pop(SESSION_NEXT_ATTEMPT_KEY, None)
        st.rerun()
    failures = st.session_state.get(SESSION_FAILURES_KEY, 0) + 1
    st.session_state[SESSION_FAILURES_KEY] = failures
    st.session_state[SESSION_NEXT_ATTEMPT_KEY] = now + SESSION_BACKOFF.delay_s(failures)
    throttle.record_failure(client)
    st.error("Wrong user or password." if users else "Wrong password.")
