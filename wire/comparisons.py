"""Where `lineguard models compare` leaves a comparison for the Models page: one JSON document per
line and candidate in the artifact store (the fields are `lineguard.comparison.Comparison.to_json`'s)."""

from __future__ import annotations

from store.artifacts import key_part


def comparison_key(line: str, version: str) -> str:
    """Artifact key of the latest comparison of candidate `version` on `line`."""
    return f"comparisons/{key_part(line)}/{key_part(version)}.json"
