"""The dashboard's settings from the environment, and the `lineguard dashboard` command that serves it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dashboard.errors import SettingsError
from dashboard.settings import DashboardSettings
from lineguard import dashboard_command


def test_defaults_and_overrides_come_from_the_environment() -> None:
    defaults = DashboardSettings.from_environment({})
    assert defaults.password is None and defaults.reviewer == ""
    chosen = DashboardSettings.from_environment(
        {
            "DATABASE_URL": "postgresql+psycopg://u@db/line",
            "REDIS_URL": "redis://queue:6379/2",
            "LINEGUARD_ARTIFACTS": "/srv/artifacts",
            "LINEGUARD_DASHBOARD_PASSWORD": "hunter2",
            "LINEGUARD_ALARM_RATE": "0.08",
            "LINEGUARD_ALARM_MIN_FRAMES": "50",
            "LINEGUARD_DASHBOARD_REFRESH_S": "10",
            "LINEGUARD_REVIEWER": "Ana",
        }
    )
    assert chosen.services.database_url == "postgresql+psycopg://u@db/line"
    assert chosen.services.redis_url == "redis://queue:6379/2"
    assert chosen.services.artifacts_url == "/srv/artifacts"
    assert chosen.password is not None and chosen.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(chosen)
    assert (chosen.alarm_rate, chosen.alarm_min_frames, chosen.refresh_s, chosen.reviewer) == (0.08, 50, 10.0, "Ana")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LINEGUARD_ALARM_RATE", "1.5"),
        ("LINEGUARD_ALARM_RATE", "five percent"),
        ("LINEGUARD_ALARM_MIN_FRAMES", "0"),
        ("LINEGUARD_DASHBOARD_REFRESH_S", "0.1"),
        ("REDIS_URL", "http://queue:6379"),
    ],
)
def test_an_unusable_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        DashboardSettings.from_environment({variable: value})


def test_the_command_serves_the_installed_app_headless_on_localhost() -> None:
    parser = argparse.ArgumentParser()
    dashboard_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard"])
    assert (args.host, args.port, args.handler) == ("127.0.0.1", None, dashboard_command.run_dashboard)
    # Without --port, Streamlit's own setting (STREAMLIT_SERVER_PORT, as `lineguard demo` sets it) decides.
    assert "--server.port" not in dashboard_command.streamlit_command(args.host, args.port)
    args = parser.parse_args(["dashboard", "--port", "9000", "--host", "0.0.0.0"])
    command = dashboard_command.streamlit_command(args.host, args.port)
    app = Path(command[command.index("run") + 1])
    assert app.is_file() and app.name == "app.py" and app.parent.name == "dashboard"
    options = dict(zip(command[command.index("run") + 2 :: 2], command[command.index("run") + 3 :: 2], strict=True))
    assert options["--server.address"] == "0.0.0.0"
    assert options["--server.port"] == "9000"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"


@pytest.mark.parametrize("port", [0, 70000, True])
def test_a_bad_port_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="--port"):
        dashboard_command.streamlit_command("127.0.0.1", port)


@pytest.mark.parametrize(
    ("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("plant.local", False)]
)
def test_only_loopback_hosts_count_as_local(host: str, loopback: bool) -> None:
    assert dashboard_command.is_loopback(host) is loopback


def test_the_command_refuses_to_start_with_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEGUARD_DASHBOARD_REFRESH_S", "never")
    parser = argparse.ArgumentParser()
    dashboard_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "--port", "9000"])
    with pytest.raises(SettingsError, match="LINEGUARD_DASHBOARD_REFRESH_S"):
        args.handler(args)
