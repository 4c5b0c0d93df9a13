"""The READMEs' settings tables match the settings class, so they cannot drift."""

from __future__ import annotations

from pathlib import Path

from api.config import Settings
from api.config_report import settings_markdown_table, variable_name

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- settings-table: begin -->"
END = "<!-- settings-table: end -->"


def settings_table(readme: str) -> str:
    text = (ROOT / readme).read_text(encoding="utf-8")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def first_columns(table: str) -> list[tuple[str, str]]:
    rows = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows.append((cells[0], cells[1]))
    return rows


def test_readme_settings_table_generated():
    # Regenerate with: python -m api.config_report
    assert settings_table("README.md") == settings_markdown_table()


def test_russian_readme_settings_in_step():
    english = first_columns(settings_markdown_table())
    russian = first_columns(settings_table("README.ru.md"))

    assert [variable for variable, _ in russian] == [variable for variable, _ in english]
    for (variable, default), (_, english_default) in zip(russian, english):
        expected = "не задана" if english_default == "unset" else english_default
        assert default == expected, variable


def test_readme_names_every_variable_once():
    text = (ROOT / "README.md").read_text(encoding="utf-8")

    for name in Settings.model_fields:
        assert settings_table("README.md").count(f"`{variable_name(name)}`") == 1
        assert f"`{variable_name(name)}`" in text
