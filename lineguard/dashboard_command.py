"""`lineguard dashboard`: serve the Streamlit dashboard (localhost only unless told otherwise)."""

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
    if not is_loopback(args.host) and settings.password is None:
        log.warning(
            "the dashboard listens on %s, reachable from other machines, without a password; set %s to require one",
            args.host, PASSWORD_ENV,
        )
    log.info("serving the dashboard on %s (Ctrl+C stops it)", args.host)
    return subprocess.run(command, check=False).returncode
