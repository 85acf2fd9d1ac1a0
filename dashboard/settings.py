"""The dashboard's settings: the line's shared services plus what only the dashboard uses.

Read from the environment when a page runs (:meth:`DashboardSettings.from_environment`), never at
import, so a test or a restarted server sees the variables as they are now.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from dashboard.errors import SettingsError
from dashboard.users import load_users
from lineguard.settings import ENVIRONMENT_VARIABLES as LINE_ENVIRONMENT_VARIABLES
from lineguard.settings import Settings as LineSettings

#: Dashboard setting name -> environment variable it is read from.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "password": "LINEGUARD_DASHBOARD_PASSWORD",
    "users": "LINEGUARD_DASHBOARD_USERS",
    "users_file": "LINEGUARD_DASHBOARD_USERS_FILE",
    "alarm_rate": "LINEGUARD_ALARM_RATE",
    "alarm_min_frames": "LINEGUARD_ALARM_MIN_FRAMES",
    "refresh_s": "LINEGUARD_DASHBOARD_REFRESH_S",
    "reviewer": "LINEGUARD_REVIEWER",
}


class DashboardSettings(BaseModel):
    """Where the data is, and how the dashboard judges and refreshes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: LineSettings = Field(
        default_factory=LineSettings, description="Redis, database, artifact storage and queue of the line"
    )
    password: SecretStr | None = Field(
        None, description="when set (and no named users are), every browser session must give it before seeing any page"
    )
    users: SecretStr | None = Field(
        None, description="named users as 'name:scrypt$...' entries, separated by commas or whitespace (see dashboard.users)"
    )
    users_file: Path | None = Field(None, description="a file of named users, one 'name:scrypt$...' entry a line")
    alarm_rate: float = Field(
        0.05, gt=0.0, le=1.0, description="defect rate (defects per scored frame) at which a line or camera stands out"
    )
    alarm_min_frames: int = Field(
        20, ge=1, description="scored frames a window needs before its rate can raise the alarm (no alarm on 1 of 2)"
    )
    refresh_s: float = Field(5.0, ge=1.0, le=3600.0, description="seconds between refreshes of the live figures")
    reviewer: str = Field(
        "", max_length=128,
        description="name prefilled as the reviewer without named users; reviews need a name before they are saved",
    )

    def user_hashes(self) -> dict[str, str]:
        """The named users and their password hashes (none configured: empty); SettingsError for a bad entry."""
        return load_users(self.users_file, None if self.users is None else self.users.get_secret_value())

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        """Settings from ``environ`` (default: the process environment); unset or empty variables keep defaults.

        Raises SettingsError naming the variable when a value is unusable.
        """
        source = os.environ if environ is None else environ
        try:
            services = LineSettings.from_environment(source)
        except ValidationError as error:
            raise SettingsError(_described(error, LINE_ENVIRONMENT_VARIABLES)) from error
        given = {name: source[variable] for name, variable in ENVIRONMENT_VARIABLES.items() if source.get(variable)}
        try:
            return cls(services=services, **given)
        except ValidationError as error:
            raise SettingsError(_described(error, ENVIRONMENT_VARIABLES)) from error


def _described(error: ValidationError, variables: Mapping[str, str]) -> str:
    """One line per invalid field, naming its environment variable (the values of secrets are not shown)."""
    problems = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        problems.append(f"{variables.get(field, field)}: {problem['msg']}")
    return "invalid dashboard settings: " + "; ".join(problems)
