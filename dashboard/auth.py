"""The optional password gate: with LINEGUARD_DASHBOARD_PASSWORD set, a session sees no page until it gives it."""

from __future__ import annotations

import hmac
import time

import streamlit as st
from pydantic import SecretStr

#: Session-state key set once the session gave the right password.
SIGNED_IN_KEY = "lineguard_signed_in"
#: Seconds a wrong password costs, to slow down guessing.
WRONG_PASSWORD_DELAY_S = 1.0


def signed_in(password: SecretStr | None) -> bool:
    """True when no password is required or this session gave it. Shows nothing."""
    return password is None or bool(st.session_state.get(SIGNED_IN_KEY, False))


def sign_in_form(password: SecretStr) -> None:
    """The sign-in form; the right password signs the session in and reruns the app.

    The comparison takes the same time however much of the password is right.
    """
    st.title("lineguard")
    with st.form("sign_in"):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if hmac.compare_digest(given.encode(), password.get_secret_value().encode()):
            st.session_state[SIGNED_IN_KEY] = True
            st.rerun()
        time.sleep(WRONG_PASSWORD_DELAY_S)
        st.error("Wrong password.")
