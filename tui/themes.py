"""Desk themes: one TOML file per theme in `themes/`, checked, turned into Textual Themes.

Each file names the Textual base colours and, under [variables], the
trading colours the CSS uses ($buy, $sell, $breaker-open, ...). A file that
fails to parse or validate is skipped with a message naming it, and the
built-in fallback stays available, so a broken file never stops the desk.
(TOML rather than YAML: Python reads it with the standard library.)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parent.parent / "themes"
DEFAULT_THEME = "execdesk-dark"
REQUIRED_VARIABLES = ("buy", "sell", "breaker-closed", "breaker-half-open", "breaker-open", "halted")

FALLBACK = Theme(
    name=DEFAULT_THEME,
    primary="#4EA1FF",
    secondary="#7A8CA5",
    accent="#FFB454",
    warning="#FFB454",
    error="#FF5F5F",
    success="#3DDC84",
    foreground="#D8DEE9",
    background="#10141A",
    surface="#161C24",
    panel="#1E2630",
    dark=True,
    variables={
        "buy": "#3DDC84",
        "sell": "#FF6B6B",
        "breaker-closed": "#3DDC84",
        "breaker-half-open": "#FFB454",
        "breaker-open": "#FF5F5F",
        "halted": "#FF2D2D",
    },
)


def _colour(value: str) -> str:
    try:
        Color.parse(value)
    except ColorParseError:
        raise ValueError(f"{value!r} is not a colour (use #RRGGBB or a CSS colour name)") from None
    return value


class ThemeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dark: bool = True
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    variables: dict[str, str] = {}

    @field_validator(
        "primary", "secondary", "accent", "warning", "error", "success",
        "foreground", "background", "surface", "panel",
    )
    @classmethod
    def _check_colour(cls, value: str | None) -> str | None:
        return None if value is None else _colour(value)

    @field_validator("variables")
    @classmethod
    def _check_variables(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [k for k in REQUIRED_VARIABLES if k not in value]
        if missing:
            raise ValueError(f"[variables] is missing {', '.join(missing)}")
        return {k: _colour(v) for k, v in value.items()}

    def to_textual_theme(self) -> Theme:
        fields = self.model_dump(exclude={"variables"})
        return Theme(**fields, variables=dict(self.variables))


@dataclass(frozen=True, slots=True)
class LoadedThemes:
    themes: dict[str, Theme]
    problems: list[str]


def load_themes(directory: Path = THEMES_DIR) -> LoadedThemes:
    """Every valid theme file in `directory`, plus what was wrong with the others."""
    themes: dict[str, Theme] = {FALLBACK.name: FALLBACK}
    problems: list[str] = []
    if not directory.is_dir():
        return LoadedThemes(themes, [f"theme folder {directory} not found; using the built-in theme"])
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            theme = ThemeFile.model_validate(data).to_textual_theme()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"theme file {path.name} could not be read: {exc}")
            continue
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "file"
            problems.append(f"theme file {path.name} is invalid: {where}: {first['msg']}")
            continue
        themes[theme.name] = theme
    return LoadedThemes(themes, problems)
