"""The compose form: what it offers (events, levels and parameters from the catalogue, groups,
channels) and how a submitted form becomes a draft, checked by the same model as the API's."""

from __future__ import annotations

from typing import Any

from multidict import MultiDictProxy

from audiences.groups import DERIVED_GROUPS
from broadcast.composing.catalogue import load_catalogue
from broadcast.composing.compose import templates_dir
from broadcast.core.models import ChannelKind, Language, MessageType
from broadcast.core.settings import Settings

PARAM_PREFIX = "param:"
CHANNEL_NAMES = {
    "sms": "短信 SMS",
    "push": "应用推送 App push",
    "voice": "语音电话 Voice call",
    "screen": "楼宇屏 Screens",
}
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}


def catalogue_view(settings: Settings) -> list[dict[str, Any]]:
    """Each event with its levels and the fields its parameters need, as the form shows them."""
    catalogue = load_catalogue(templates_dir(settings))
    events = []
    for event, entry in catalogue.events.items():
        zh, en = entry.wording(Language.zh), entry.wording(Language.en)
        fields: list[dict[str, Any]] = []
        for name in entry.params:
            spec = catalogue.params[name]
            for language in Language:
                key = spec.key(name, language)
                if any(f["key"] == key for f in fields):
                    continue
                label = spec.label[Language.zh] + ("（英文）" if key.endswith("_en") else "")
                fields.append(
                    {
                        "key": key,
                        "label": f"{label} {spec.label[Language.en]}",
                        "required": name in entry.required,
                        "example": spec.example_for(language),
                    }
                )
        events.append(
            {
                "value": event.value,
                "name": f"{zh.name if zh else event.value} {en.name if en else ''}".strip(),
                "levels": [level.value for level in entry.levels],
                "fields": fields,
            }
        )
    return events


def groups_view(custom: dict[str, str]) -> list[tuple[str, str]]:
    """(name, description) of every group a target may be narrowed to."""
    derived = [(name, description) for name, (_, description) in DERIVED_GROUPS.items()]
    return derived + sorted(custom.items())


def draft_data(form: MultiDictProxy[Any], composer: str) -> dict[str, Any]:
    """The draft a submitted compose form describes, as plain data for ``AlertDraft``."""
    params = {
        str(key)[len(PARAM_PREFIX) :]: str(value).strip()
        for key, value in form.items()
        if str(key).startswith(PARAM_PREFIX) and str(value).strip()
    }
    data: dict[str, Any] = {
        "event": form.get("event", ""),
        "level": form.get("level", ""),
        "target": {
            "areas": [str(a) for a in form.getall("area", [])],
            "groups": [str(g) for g in form.getall("group", [])],
            "exclude": [str(e) for e in form.getall("exclude", [])],
        },
        "channels": [str(c) for c in form.getall("channel", [])] or [],
        "languages": [str(lang) for lang in form.getall("language", [])] or [],
        "params": params,
        "exercise": form.get("drill") == "on",
        "composed_by": composer,
        "msg_type": form.get("msg_type") or MessageType.alert.value,
    }
    if form.get("references"):
        data["references"] = str(form["references"])
    if str(form.get("valid_minutes", "")).strip():
        data["valid_minutes"] = str(form["valid_minutes"]).strip()
    return data


def form_values(data: dict[str, Any] | None) -> dict[str, Any]:
    """What the form shows filled in: a draft being corrected, the alert being updated, or defaults."""
    values: dict[str, Any] = {
        "event": "typhoon",
        "level": "",
        "areas": [],
        "groups": [],
        "channels": [ChannelKind.sms.value],
        "languages": [Language.zh.value, Language.en.value],
        "params": {},
        "exercise": False,
        "valid_minutes": 12 * 60,
        "msg_type": MessageType.alert.value,
        "references": "",
    }
    if data is None:
        return values
    target = data.get("target") or {}
    values.update(
        {
            key: data[key]
            for key in ("event", "level", "channels", "languages", "params", "exercise", "valid_minutes", "msg_type")
            if data.get(key) not in (None, "", [])
        }
    )
    values["areas"] = list(target.get("areas", []))
    values["groups"] = list(target.get("groups", []))
    values["references"] = data.get("references") or ""
    return values
