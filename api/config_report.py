"""Settings as people read them: ``tickets config``, the README table, and start-up errors."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from .config import Settings
from .logs import mask_sensitive

ENV_PREFIX = "TICKETS_"


def variable_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def unit_of(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    return extra["unit"] if isinstance(extra, dict) else ""


def expected_form(field: FieldInfo) -> str:
    """Describe the values a setting accepts, such as "a whole number from 0 to 65535 (port)"."""
    bounds: dict[str, Any] = {}
    for constraint in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if hasattr(constraint, name):
                bounds[name] = getattr(constraint, name)
    unit = unit_of(field)
    if field.annotation not in (int, float):
        return unit
    if "ge" in bounds and "le" in bounds:
        limits = f"from {bounds['ge']} to {bounds['le']}"
    else:
        words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
        limits = " and ".join(f"{words[name]} {value}" for name, value in bounds.items())
    kind = "a whole number" if field.annotation is int else "a number"
    return f"{kind} {limits} ({unit})" if limits else f"{kind} ({unit})"


def show_value(field_name: str, value: Any) -> str:
    """Render a setting's value with secrets and URL passwords masked."""
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "***"
    return mask_sensitive(str(value))


@dataclass(frozen=True)
class SettingRow:
    variable: str
    value: str
    unit: str
    source: str
    description: str


def setting_rows(settings: Settings) -> list[SettingRow]:
    """Return one row per setting with its effective value, masked, and where it came from."""
    rows = []
    for name, field in Settings.model_fields.items():
        source = "environment" if name in settings.model_fields_set else "default"
        rows.append(
            SettingRow(
                variable_name(name),
                show_value(name, getattr(settings, name)),
                unit_of(field),
                source,
                field.description or "",
            )
        )
    return rows


def format_settings(settings: Settings) -> str:
    """Render the effective settings as aligned columns: variable, value, unit, source."""
    rows = setting_rows(settings)
    header = SettingRow("variable", "value", "unit", "source", "")
    widths = [max(len(getattr(row, column)) for row in [header, *rows]) for column in ("variable", "value", "unit")]
    lines = []
    for row in [header, *rows]:
        lines.append(
            f"{row.variable:<{widths[0]}}  {row.value:<{widths[1]}}  {row.unit:<{widths[2]}}  {row.source}".rstrip()
        )
    return "\n".join(lines)


def settings_markdown_table() -> str:
    """Return the README's table of settings: variable, default, unit, meaning."""
    lines = ["| variable | default | unit | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else f"`{field.default}`"
        cells = [f"`{variable_name(name)}`", default, unit_of(field), field.description or ""]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def describe_invalid_settings(error: pydantic.ValidationError) -> list[str]:
    """Return one line per invalid setting: the variable, the value given, what is wrong and what is expected."""
    lines = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:
            lines.append(f"invalid settings: {message}")
            continue
        name = str(problem["loc"][0])
        field = Settings.model_fields.get(name)
        if field is None:
            lines.append(f"invalid setting {variable_name(name)}: {message}")
            continue
        given = problem.get("input")
        secret = field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
        shown = "***" if secret else mask_sensitive(repr(given))
        lines.append(f"invalid setting {variable_name(name)}={shown}: {message}; expected {expected_form(field)}")
    return lines


if __name__ == "__main__":
    # The README's table: python -m api.config_report
    print(settings_markdown_table())
