"""The warning catalogue: the events, the colour levels each really has, the parameters each
takes, and what each says in every language. It lives in ``templates/catalogue.toml``.

The file is validated when it is read: a structural mistake (an unknown level, issuer or
parameter, guidance for a level the event does not have) makes the catalogue unusable and is
reported naming the entry. A missing translation is not a load error: it is a problem of the
drafts that need it, found at issue time and by ``broadcast templates check``.
"""

from __future__ import annotations

import re
import tomllib
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from broadcast.core.models import AlertDraft, EventType, Language, Level, MessageType

CATALOGUE_FILE = "catalogue.toml"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")

Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,35}$")]


class CatalogueError(Exception):
    """The catalogue file cannot be used, or has no entry for what was asked."""


class ParamKind(str, Enum):
    number = "number"  # one language-neutral value, checked against a pattern
    text = "text"  # one value per language: ``name`` in Chinese, ``name_en`` in English


class ParamSpec(BaseModel):
    """One parameter an event's wording may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ParamKind
    label: dict[Language, Text]
    example: Text
    example_en: Text | None = None
    pattern: str | None = None
    max_length: int = Field(default=40, ge=1, le=200)  # characters; English, being wordier, gets twice this

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.kind is ParamKind.number and not self.pattern:
            raise ValueError("a number parameter needs a pattern")
        if self.kind is ParamKind.text and not self.example_en:
            raise ValueError("a text parameter needs example_en")
        return self

    def key(self, name: str, language: Language) -> str:
        """The key in an alert's params that holds this parameter for ``language``."""
        if self.kind is ParamKind.number or language is Language.zh:
            return name
        return f"{name}_{language.value}"

    def limit(self, key: str) -> int:
        """The most characters the value under ``key`` may have."""
        return self.max_length * 2 if self.kind is ParamKind.text and key.endswith("_en") else self.max_length

    def example_for(self, language: Language) -> str:
        return (self.example_en or self.example) if language is Language.en else self.example


class Wording(BaseModel):
    """What an event says in one language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    situation: Text
    lifted: Text
    guidance: dict[Level, Text] = {}


class EventEntry(BaseModel):
    """One event of the catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    shelter: bool = False  # from orange up, messages name the community's shelter
    levels: list[Level] = Field(min_length=1)
    required: list[ParamName] = []
    optional: list[ParamName] = []
    zh: Wording | None = None
    en: Wording | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EventEntry:
        if self.levels != sorted(set(self.levels), key=lambda level: level.rank):
            raise ValueError("levels must be distinct and run from least to most severe")
        both = set(self.required) & set(self.optional)
        if both:
            raise ValueError(f"parameters both required and optional: {', '.join(sorted(both))}")
        for language in Language:
            wording = self.wording(language)
            extra = set(wording.guidance) - set(self.levels) if wording else set()
            if extra:
                names = ", ".join(level.value for level in sorted(extra, key=lambda level: level.rank))
                raise ValueError(f"{language.value} guidance for levels the event does not have: {names}")
        return self

    @property
    def params(self) -> list[str]:
        return [*self.required, *self.optional]

    def wording(self, language: Language) -> Wording | None:
        """The event's words in ``language``, or None when it has no translation."""
        wording: Wording | None = getattr(self, language.value)
        return wording


class Catalogue(BaseModel):
    """The whole catalogue file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: dict[Language, Text]  # who calls and sends: the voice introduces itself with this
    issuers: dict[str, dict[Language, Text]]
    params: dict[ParamName, ParamSpec]
    events: dict[EventType, EventEntry]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalogue:
        for event, entry in self.events.items():
            if entry.issuer not in self.issuers:
                raise ValueError(f"{event.value}: unknown issuer {entry.issuer!r}")
            unknown = [name for name in entry.params if name not in self.params]
            if unknown:
                raise ValueError(f"{event.value}: unknown parameters {', '.join(unknown)}")
        return self

    def entry(self, event: EventType) -> EventEntry:
        """The event's entry; CatalogueError naming the event when the catalogue lacks it."""
        try:
            return self.events[event]
        except KeyError:
            raise CatalogueError(f"templates/{CATALOGUE_FILE} has no entry for {event.value}") from None

    def issuer(self, event: EventType, language: Language) -> str:
        """Who issues the event's warnings, named in ``language``."""
        names = self.issuers[self.entry(event).issuer]
        return names.get(language) or names[Language.zh]

    def level_problem(self, event: EventType, level: Level) -> str | None:
        """Why ``event`` cannot be issued at ``level`` (a level the signal does not have), or None."""
        levels = self.entry(event).levels
        if level in levels:
            return None
        return f"{event.value} has no {level.value} level; its levels are {', '.join(lv.value for lv in levels)}"

    def wording_problems(self, event: EventType, language: Language, level: Level) -> list[str]:
        """What the catalogue lacks to word ``event`` at ``level`` in ``language``."""
        where = f"templates/{CATALOGUE_FILE}"
        wording = self.entry(event).wording(language)
        if wording is None:
            return [
                f"{where}: {event.value} has no {language.value} translation ([events.{event.value}.{language.value}])"
            ]
        if level not in wording.guidance:
            return [f"{where}: {event.value} has no {language.value} guidance for {level.value}"]
        return []

    def param_problems(self, draft: AlertDraft) -> list[str]:
        """Every parameter of the draft that is unknown, malformed or missing for its languages."""
        entry = self.entry(draft.event)
        accepted = {self.params[name].key(name, lang): name for name in entry.params for lang in Language}
        problems: list[str] = []
        for key, value in draft.params.items():
            name = accepted.get(key)
            if name is None:
                takes = ", ".join(accepted) or "no parameters"
                problems.append(f"{draft.event.value} takes no parameter {key}; it takes {takes}")
            else:
                problems += _value_problems(key, value, self.params[name])
        given = {k for k, v in draft.params.items() if v.strip()}
        needs_all = draft.msg_type is not MessageType.cancel  # a cancel need not restate the situation
        for name in entry.params:
            spec = self.params[name]
            keys = {spec.key(name, lang) for lang in draft.languages}
            required = needs_all and name in entry.required
            if not (required or keys & given):
                continue
            for key in sorted(keys - given):
                why = "" if required else f" because {', '.join(sorted(keys & given))} is given"
                problems.append(f"{draft.event.value} needs parameter {key} ({_label(spec, key)}){why}")
        return problems

    def situation_values(self, draft: AlertDraft, language: Language) -> dict[str, str]:
        """The event's parameters as its wording in ``language`` reads them ('' when not given)."""
        entry = self.entry(draft.event)
        return {name: draft.params.get(self.params[name].key(name, language), "").strip() for name in entry.params}

    def sample_params(self, event: EventType, languages: list[Language], *, optional: bool) -> dict[str, str]:
        """Example parameters for ``event`` (the required ones, and optionally the rest)."""
        entry = self.entry(event)
        names = entry.params if optional else entry.required
        return {self.params[n].key(n, lang): self.params[n].example_for(lang) for n in names for lang in languages}


def _label(spec: ParamSpec, key: str) -> str:
    english = spec.kind is ParamKind.text and key.endswith("_en")
    return spec.label[Language.en] + (", in English" if english else "")


def _value_problems(key: str, value: str, spec: ParamSpec) -> list[str]:
    text = value.strip()
    if _CONTROL.search(value):
        return [f"parameter {key} may not contain line breaks or control characters"]
    if len(text) > spec.limit(key):
        return [f"parameter {key} is {len(text)} characters long; at most {spec.limit(key)} fit a message"]
    if text and spec.pattern and not re.fullmatch(spec.pattern, text):
        return [f"parameter {key}={text!r} is not a valid {spec.label[Language.en]} (for example {spec.example})"]
    return []


@lru_cache(maxsize=8)
def load_catalogue(directory: Path) -> Catalogue:
    """Read and validate ``catalogue.toml`` in ``directory``; CatalogueError says what is wrong."""
    path = directory / CATALOGUE_FILE
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise CatalogueError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CatalogueError(f"{path}: {where}: {first['msg']}") from None
