"""Map a file's header columns to `crm.lead.create` fields by name, alias or an explicit mapping."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.importer.errors import FileRejected

# Field → aliases. The first Russian and the first English alias are the canonical ones used
# in the template; matching ignores case, spaces and punctuation (see normalize_column).
FIELD_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "title": {
        "ru": ("Название лида", "Название", "Наименование", "Лид", "Заголовок"),
        "en": ("Lead name", "Title", "Lead title", "Lead", "Name of lead"),
    },
    "responsible_id": {
        "ru": ("Ответственный", "ID ответственного", "Ответственный ID"),
        "en": ("Responsible", "Responsible ID", "Owner", "Owner ID", "Assignee"),
    },
    "external_id": {
        "ru": ("Внешний ID", "Внешний идентификатор", "Внешний код"),
        "en": ("External ID", "External identifier", "Ext ID"),
    },
    "contact_name": {
        "ru": ("Контакт", "Имя", "ФИО", "Контактное лицо", "Имя контакта"),
        "en": ("Contact name", "Contact", "Name", "Full name", "Contact person"),
    },
    "contact_phone": {
        "ru": ("Телефон", "Тел", "Мобильный", "Мобильный телефон", "Телефон контакта", "Номер телефона"),
        "en": ("Phone", "Phone number", "Telephone", "Tel", "Mobile", "Contact phone"),
    },
    "contact_email": {
        "ru": ("Эл. почта", "Электронная почта", "Почта", "Емейл", "Имейл", "Email контакта"),
        "en": ("Email", "E-mail", "Mail", "Email address", "Contact email"),
    },
    "contact_id": {
        "ru": ("ID контакта", "Код контакта"),
        "en": ("Contact ID",),
    },
    "company_name": {
        "ru": ("Компания", "Организация", "Название компании", "Наименование организации", "Юрлицо"),
        "en": ("Company", "Company name", "Organization", "Organisation", "Account"),
    },
    "company_inn": {
        "ru": ("ИНН", "ИНН компании", "ИНН организации"),
        "en": ("INN", "Company INN", "Tax ID", "TIN"),
    },
    "company_id": {
        "ru": ("ID компании", "Код компании"),
        "en": ("Company ID",),
    },
    "product_id": {
        "ru": ("ID товара", "Товар", "Продукт", "Код товара", "ID продукта"),
        "en": ("Product ID", "Product", "SKU"),
    },
    "product_quantity": {
        "ru": ("Количество", "Кол-во", "Количество товара"),
        "en": ("Quantity", "Qty", "Product quantity"),
    },
    "source": {
        "ru": ("Источник", "Источник лида", "Канал"),
        "en": ("Source", "Lead source", "Channel"),
    },
    "marketing_event": {
        "ru": ("Мероприятие", "Маркетинговое мероприятие", "Событие"),
        "en": ("Marketing event", "Event"),
    },
    "utm_source": {"ru": ("UTM источник", "utm_source"), "en": ("UTM source",)},
    "utm_medium": {"ru": ("UTM канал", "UTM тип трафика", "utm_medium"), "en": ("UTM medium",)},
    "utm_campaign": {"ru": ("UTM кампания", "utm_campaign"), "en": ("UTM campaign",)},
    "need_maturity": {
        "ru": ("Зрелость потребности", "Зрелость", "Потребность"),
        "en": ("Need maturity", "Maturity"),
    },
    "description": {
        "ru": ("Описание", "Комментарий", "Примечание"),
        "en": ("Description", "Comment", "Notes", "Note"),
    },
    "stage_id": {
        "ru": ("Этап", "Стадия", "ID этапа"),
        "en": ("Stage", "Stage ID"),
    },
}

LEAD_FIELDS: tuple[str, ...] = tuple(FIELD_ALIASES)

# Values an explicit mapping may use to say "do not import this column".
_SKIP_FIELDS = {"", "-", "skip", "ignore"}
_BRACKETED = re.compile(r"[(\[][^)\]]*[)\]]")


def normalize_column(name: str) -> str:
    """Case-, space- and punctuation-insensitive key: 'Эл. почта' == 'эл почта' == 'ЭЛ.ПОЧТА'."""
    return "".join(ch for ch in name.casefold().replace("ё", "е") if ch.isalnum())


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for field_name, by_language in FIELD_ALIASES.items():
        for alias in (field_name, *by_language["ru"], *by_language["en"]):
            key = normalize_column(alias)
            owner = index.setdefault(key, field_name)
            if owner != field_name:
                raise AssertionError(f"alias {alias!r} maps to both {owner} and {field_name}")
    return index


_ALIAS_INDEX = _build_alias_index()


def field_for_column(name: str) -> str | None:
    """The lead field a header names, trying it whole and then without a '(hint)' or '[hint]'."""
    key = normalize_column(name)
    if key in _ALIAS_INDEX:
        return _ALIAS_INDEX[key]
    stripped = normalize_column(_BRACKETED.sub("", name))
    return _ALIAS_INDEX.get(stripped) if stripped else None


def canonical_header(language: str = "ru") -> list[str]:
    """One header name per field, in field order, as the template writes it."""
    if language not in ("ru", "en"):
        raise ValueError(f"language must be 'ru' or 'en', not {language!r}")
    return [FIELD_ALIASES[name][language][0] for name in LEAD_FIELDS]


@dataclass(frozen=True)
class Mapping:
    """Which header column feeds which lead field, and what was left out and why."""

    header: list[str]
    columns: dict[int, str]
    unknown_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def column_name(self, index: int) -> str:
        """The header text people see; an unnamed column is called by its position."""
        name = self.header[index] if index < len(self.header) else ""
        return name or f"column {index + 1}"

    def index_of(self, field_name: str) -> int | None:
        for index, mapped in self.columns.items():
            if mapped == field_name:
                return index
        return None

    def column_for_path(self, path: str) -> str | None:
        """The file column behind a lead field path such as `contact.email`, if one feeds it."""
        for candidate in (path.replace(".", "_"), path.split(".")[0]):
            index = self.index_of(candidate)
            if index is not None:
                return self.column_name(index)
        return None

    def cell(self, column: str | None, cells: list) -> str | None:
        """A row's value in the named column (for an error's `value`)."""
        if column is None:
            return None
        for index in range(len(self.header)):
            if self.column_name(index) == column and index < len(cells):
                return cells[index]
        return None


def build_mapping(header: list[str], explicit: dict[str, str] | None = None) -> Mapping:
    """Explicit entries first (column header → field), then aliases for every other column."""
    header = [(name or "").strip() for name in header]
    columns: dict[int, str] = {}
    taken: dict[str, int] = {}
    explicit_indexes = _map_explicit(header, explicit, columns, taken) if explicit else set()
    unknown, warnings = _map_by_alias(header, explicit_indexes, columns, taken)
    if not columns:
        expected = "; ".join(
            f"{name}: {FIELD_ALIASES[name]['ru'][0]} / {FIELD_ALIASES[name]['en'][0]}" for name in LEAD_FIELDS
        )
        raise FileRejected(
            "no_known_columns",
            f"no column of the file matches a lead field; the file's header is: "
            f"{', '.join(repr(h) for h in header if h) or '(empty)'}; expected names such as {expected}",
        )
    return Mapping(header=header, columns=dict(sorted(columns.items())), unknown_columns=unknown, warnings=warnings)


def _map_explicit(header: list[str], explicit: dict[str, str], columns: dict[int, str], taken: dict[str, int]) -> set[int]:
    """The caller's column → field entries into ``columns``; the indexes they decided (skipped ones too)."""
    positions = {name: i for i, name in reversed(list(enumerate(header))) if name}
    by_key = {normalize_column(name): i for i, name in reversed(list(enumerate(header))) if name}
    decided: set[int] = set()
    missing = []
    for column, field_name in explicit.items():
        index = positions.get(column.strip(), by_key.get(normalize_column(column)))
        if index is None:
            missing.append(column)
            continue
        target = (field_name or "").strip()
        if target.casefold() in _SKIP_FIELDS:
            decided.add(index)
            continue
        if target not in FIELD_ALIASES:
            raise FileRejected(
                "unknown_mapping_field",
                f"the mapping sends column '{column}' to '{field_name}', which is not a lead field; "
                f"use one of: {', '.join(LEAD_FIELDS)}",
            )
        if target in taken:
            raise FileRejected(
                "duplicate_mapping_field",
                f"the mapping sends both '{header[taken[target]]}' and '{column}' to '{target}'; "
                "map each field from one column",
            )
        columns[index] = target
        taken[target] = index
        decided.add(index)
    if missing:
        raise FileRejected(
            "unknown_mapping_column",
            f"the mapping names columns that are not in the file: {', '.join(repr(m) for m in missing)}; "
            f"the file's columns are: {', '.join(repr(h) for h in header if h)}",
        )
    return decided


def _map_by_alias(header: list[str], decided: set[int], columns: dict[int, str], taken: dict[str, int]) -> tuple[list[str], list[str]]:
    """Every other column by its name's aliases into ``columns``; the unknown columns and the warnings."""
    unknown: list[str] = []
    warnings: list[str] = []
    for index, name in enumerate(header):
        if index in decided or not name:
            continue
        field_name = field_for_column(name)
        if field_name is None:
            if name not in unknown:
                unknown.append(name)
            continue
        if field_name in taken:
            warnings.append(
                f"column '{name}' also maps to '{field_name}', already taken by column "
                f"'{header[taken[field_name]]}'; it is ignored"
            )
            continue
        columns[index] = field_name
        taken[field_name] = index
    return unknown, warnings
