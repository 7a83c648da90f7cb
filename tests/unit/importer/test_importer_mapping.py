"""Header columns to lead fields: aliases, explicit mappings and what is reported."""

from __future__ import annotations

import pytest

from services.importer.errors import FileRejected
from services.importer.mapping import LEAD_FIELDS, build_mapping, canonical_header, field_for_column


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Название", "title"), ("Название лида", "title"), ("Title", "title"), ("Lead name", "title"),
        ("Имя", "contact_name"), ("Контакт", "contact_name"), ("ФИО", "contact_name"),
        ("Contact", "contact_name"), ("Name", "contact_name"),
        ("Телефон", "contact_phone"), ("Тел.", "contact_phone"), ("Phone", "contact_phone"),
        ("Эл. почта", "contact_email"), ("E-mail", "contact_email"), ("Email", "contact_email"),
        ("Почта", "contact_email"),
        ("Компания", "company_name"), ("Организация", "company_name"), ("Company", "company_name"),
        ("ИНН", "company_inn"), ("INN", "company_inn"),
        ("Источник", "source"), ("Source", "source"),
        ("utm_source", "utm_source"), ("UTM Source", "utm_source"), ("utm-medium", "utm_medium"),
        ("UTM campaign", "utm_campaign"),
        ("Ответственный", "responsible_id"), ("Responsible", "responsible_id"),
        ("Внешний ID", "external_id"), ("External ID", "external_id"),
        ("Описание", "description"), ("Description", "description"),
        ("Зрелость потребности", "need_maturity"), ("Need maturity", "need_maturity"),
        ("Этап", "stage_id"), ("Stage", "stage_id"),
        ("Мероприятие", "marketing_event"), ("Marketing event", "marketing_event"),
        ("  эл.   ПОЧТА ", "contact_email"), ("Телефон (мобильный)", "contact_phone"), ("Название *", "title"),
        ("Ёлка", None), ("Comment on the lead", None),
    ],
)
def test_aliases_match_ignoring_case_spaces_and_punctuation(header, field):
    assert field_for_column(header) == field


def test_every_contract_field_name_maps_to_itself():
    for name in LEAD_FIELDS:
        assert field_for_column(name) == name


def test_build_mapping_reports_unknown_columns_once_and_duplicate_targets():
    header = ["Название", "Телефон", "Цвет глаз", "Phone", "Цвет глаз", "", "Компания"]

    mapping = build_mapping(header)

    assert mapping.columns == {0: "title", 1: "contact_phone", 6: "company_name"}
    assert mapping.unknown_columns == ["Цвет глаз"]
    assert len(mapping.warnings) == 1
    assert "'Phone'" in mapping.warnings[0] and "'Телефон'" in mapping.warnings[0]
    assert mapping.column_name(5) == "column 6"


def test_no_known_column_is_refused_with_the_header_and_expected_names():
    with pytest.raises(FileRejected) as caught:
        build_mapping(["Foo", "Bar"])

    assert caught.value.code == "no_known_columns"
    assert "'Foo', 'Bar'" in caught.value.message
    assert "Название лида / Lead name" in caught.value.message


def test_explicit_mapping_wins_and_can_skip_columns():
    header = ["Клиент", "Телефон", "Моб", "Email"]

    mapping = build_mapping(header, {"Клиент": "title", "Моб": "contact_phone", "Телефон": "", "email": "skip"})

    assert mapping.columns == {0: "title", 2: "contact_phone"}
    assert mapping.warnings == []


def test_explicit_mapping_to_a_taken_field_turns_the_alias_column_into_a_warning():
    mapping = build_mapping(["Телефон", "Моб"], {"Моб": "contact_phone"})

    assert mapping.columns == {1: "contact_phone"}
    assert "'Телефон'" in mapping.warnings[0]


def test_explicit_mapping_naming_a_missing_column_is_refused():
    with pytest.raises(FileRejected) as caught:
        build_mapping(["Название", "Телефон"], {"Мобильный": "contact_phone"})

    assert caught.value.code == "unknown_mapping_column"
    assert "'Мобильный'" in caught.value.message and "'Название', 'Телефон'" in caught.value.message


def test_explicit_mapping_naming_an_unknown_field_is_refused():
    with pytest.raises(FileRejected) as caught:
        build_mapping(["Название", "Телефон"], {"Телефон": "phone_number"})

    assert caught.value.code == "unknown_mapping_field"
    assert "contact_phone" in caught.value.message


def test_explicit_mapping_sending_two_columns_to_one_field_is_refused():
    with pytest.raises(FileRejected) as caught:
        build_mapping(["A", "B"], {"A": "title", "B": "title"})

    assert caught.value.code == "duplicate_mapping_field"


@pytest.mark.parametrize("language", ["ru", "en"])
def test_canonical_header_maps_every_field(language):
    mapping = build_mapping(canonical_header(language))

    assert sorted(mapping.columns.values()) == sorted(LEAD_FIELDS)
    assert mapping.unknown_columns == [] and mapping.warnings == []
