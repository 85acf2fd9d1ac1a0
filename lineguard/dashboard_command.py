"""`lineguard dashboard`: serve the Streamlit dashboard (localhost only unless told otherwise);
`lineguard dashboard-user`: make a named user's entry (see dashboard.users)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import subprocess
import sys
from pathlib import Path

import dashboard
from dashboard.settings import ENVIRONMENT_VARIABLES, DashboardSettings

log = logging.getLogger("lineguard")

#: Address the dashboard listens on unless --host says otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
#: Environment variable that, when set, makes every browser session give a password first.
PASSWORD_ENV = ENVIRONMENT_VARIABLES["password"]


def register(commands: argparse._SubParsersAction) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the dashboard (live figures, review queue, models)",
        description=(
            "Serve the dashboard on http://HOST:PORT. It reads DATABASE_URL, REDIS_URL, LINEGUARD_ARTIFACTS "
            f"and LINEGUARD_QUEUE like the other commands; set {PASSWORD_ENV} to require a password."
        ),
    )
    dashboard.add_argument(
        "--port", type=int, help="port to listen on (default: Streamlit's, 8501 unless STREAMLIT_SERVER_PORT says otherwise)"
    )
    dashboard.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)"
    )
    dashboard.set_defaults(handler=run_dashboard)

    user = commands.add_parser(
        "dashboard-user",
        help="make a named dashboard user's 'name:scrypt$...' entry (asks for the password)",
        description=(
            "Print the entry of user NAME with a new password, for LINEGUARD_DASHBOARD_USERS, or write it into the "
            "users file (LINEGUARD_DASHBOARD_USERS_FILE), replacing the user's earlier entry. Reviews are signed with NAME."
        ),
    )
    user.add_argument("name", metavar="NAME")
    user.add_argument("--file", type=Path, help="users file to write the entry into (created with mode 600)")
    user.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    user.set_defaults(handler=run_dashboard_user)


def run_dashboard_user(args: argparse.Namespace) -> int:
    import getpass
    import os

    from dashboard.users import check_user_name, hash_password, with_user

    name = check_user_name(args.name)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password of {name}: ")
        if getpass.getpass("the same again: ") != password:
            raise ValueError("the two passwords differ; nothing written")
    entry = hash_password(password)
    if args.file is None:
        print(f"{name}:{entry}")
        return 0
    text = with_user(args.file, name, entry)
    temporary = args.file.with_name(args.file.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o600)
    temporary.replace(args.file)
    print(f"user {name} written to {args.file}")
    return 0


def app_path() -> Path:
    """The dashboard's Streamlit entrypoint, found through the installed package."""
    return Path(dashboard.__file__).resolve().parent / "app.py"


def streamlit_command(host: str, port: int | None) -> list[str]:
    """The command that serves the dashboard on ``host``:``port`` with this Python, headless.

    With ``port`` None, Streamlit's own setting decides (``STREAMLIT_SERVER_PORT``, else 8501).
    Raises ValueError naming the argument when the port is out of range or the host is empty.
    """
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ValueError(f"--port must be a whole number from 1 to 65535, got {port!r}")
    if not host or host.strip() != host:
        raise ValueError(f"--host must be an address or host name without spaces, got {host!r}")
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", host,
        *(["--server.port", str(port)] if port is not None else []),
        "--server.headless", "true",
        # No usage statistics leave the machine; the toolbar offers no developer or deploy options.
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_dashboard(args: argparse.Namespace) -> int:
    command = streamlit_command(args.host, args.port)
    # The page would show a bad setting too; refusing to start names it at once.
    settings = DashboardSettings.from_environment()
    if not is_loopback(args.host) and settings.password is None and not settings.user_hashes():
        log.warning(
            "the dashboard listens on %s, reachable from other machines, without a password; set %s to require one",
            args.host, PASSWORD_ENV,
        )
    log.info("serving the dashboard on %s (Ctrl+C stops it)", args.host)
    return subprocess.run(command, check=False).returncode
