"""Row validation and the shape of the `crm.lead.create` payload; stable ids."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from services.importer import domain, rows
from crmkit.phones import normalize_phone
from services.importer.domain import command_id, derive_lead_id
from services.importer.rows import parse_date, row_to_lead
from services.importer.mapping import build_mapping

HEADER = [
    "Название", "Ответственный", "Внешний ID", "Контакт", "Телефон", "Email", "ID контакта", "Компания",
    "ИНН", "ID компании", "ID товара", "Количество", "Источник", "Мероприятие", "utm_source", "utm_medium",
    "utm_campaign", "Зрелость потребности", "Описание", "Этап", "Заметка для себя",
]
MAPPING = build_mapping(HEADER)


def row(**values: str | None) -> list[str | None]:
    cells: list[str | None] = [None] * len(HEADER)
    for column, value in values.items():
        cells[HEADER.index(column.replace("_", " "))] = value
    return cells


def test_full_row_becomes_a_create_payload():
    cells = [
        "  Поставка   станков ", "user-7", "ERP-42", "Иванов  Иван", "8 (912) 345-67-89", "ivan@example.ru",
        "c-1", "ООО «Ромашка»", "7701 234 567", "co-1", "p-1", "3", "website", "Иннопром", "yandex", "cpc",
        "spring", "Срочно", "Первая строка\nвторая", "processing", "не импортируется",
    ]

    result = row_to_lead(2, cells, MAPPING, pipeline_id="default", stage_id="new")

    assert result.ok and result.errors == []
    assert result.lead == {
        "pipeline_id": "default",
        "title": "Поставка станков",
        "responsible_id": "user-7",
        "external_id": "ERP-42",
        "contact": {"contact_id": "c-1", "name": "Иванов Иван", "phone": "+79123456789", "email": "ivan@example.ru"},
        "company": {"company_id": "co-1", "name": "ООО «Ромашка»", "inn": "7701234567"},
        "products": [{"product_id": "p-1", "quantity": 3}],
        "source": "website",
        "marketing_event": "Иннопром",
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "need_maturity": "urgent",
        "description": "Первая строка\nвторая",
        "stage_id": "processing",
    }


def test_only_non_empty_values_are_included_and_stage_defaults():
    result = row_to_lead(5, row(Название="Лид", Телефон="  "), MAPPING, pipeline_id=None, stage_id="new")

    assert result.lead == {"title": "Лид", "stage_id": "new"}


@pytest.mark.parametrize(
    ("values", "expected_title"),
    [({"Компания": "ООО Ромашка", "Контакт": "Иван"}, "ООО Ромашка"), ({"Контакт": "Иван"}, "Иван")],
)
def test_title_falls_back_to_company_then_contact(values, expected_title):
    assert row_to_lead(2, row(**values), MAPPING, pipeline_id="p").lead["title"] == expected_title


@pytest.mark.parametrize(
    ("values", "column", "fragment"),
    [
        ({"Телефон": "12345"}, "Телефон", "not a phone number"),
        ({"Телефон": "8912345678989123456789"}, "Телефон", "one number per cell"),
        ({"Email": "ivan.example.ru"}, "Email", "not an email address"),
        ({"Email": "a@b"}, "Email", "not an email address"),
        ({"ИНН": "12345"}, "ИНН", "10 (company) or 12 (individual) digits"),
        ({"ИНН": "77012345AB"}, "ИНН", "not an INN"),
        ({"Зрелость потребности": "горячий"}, "Зрелость потребности", "use aware, interested or urgent"),
        ({"ID товара": "p-1", "Количество": "0"}, "Количество", "not a positive number"),
        ({"ID товара": "p-1", "Количество": "много"}, "Количество", "not a positive number"),
        ({"Количество": "2"}, "Количество", "without a product ID"),
        ({"Описание": "x" * 40_000}, "Описание", "over the limit of 32768"),
    ],
)
def test_each_validation_error_names_its_column(values, column, fragment):
    result = row_to_lead(7, row(Название="Лид", **values), MAPPING, pipeline_id="p")

    assert not result.ok and result.lead is None
    assert len(result.errors) == 1
    assert result.errors[0][0] == column
    assert fragment in result.errors[0][1]


def test_empty_title_is_an_error_on_the_title_column():
    result = row_to_lead(3, row(Телефон="89123456789"), MAPPING, pipeline_id="p")

    assert result.errors == [("Название", "title is empty; fill in the lead title, a company name or a contact name")]


def test_missing_title_column_names_the_field():
    mapping = build_mapping(["Телефон"])

    assert row_to_lead(3, ["89123456789"], mapping, pipeline_id="p").errors[0][0] == "title"


def test_all_errors_of_a_row_are_reported_together():
    result = row_to_lead(3, row(Email="bad", ИНН="1", Телефон="1"), MAPPING, pipeline_id="p")

    assert [column for column, _ in result.errors] == ["Название", "Телефон", "Email", "ИНН"]


def test_cell_limit_is_configurable():
    result = row_to_lead(3, row(Название="x" * 11), MAPPING, pipeline_id="p", max_cell_chars=10)

    assert result.errors[0][0] == "Название" and "over the limit of 10" in result.errors[0][1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 (912) 345-67-89", "+79123456789"),
        ("8 912 345 67 89", "+79123456789"),
        ("79123456789", "+79123456789"),
        ("9123456789", "+79123456789"),
        ("495 123-45-67", "+74951234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("12345", None),
        ("1234567890", None),
    ],
)
def test_phone_normalisation_makes_russian_forms_equal(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("осведомлён", "aware"), ("Заинтересован", "interested"), ("urgent", "urgent"), ("AWARE", "aware")],
)
def test_need_maturity_accepts_russian_and_english(raw, expected):
    result = row_to_lead(2, row(Название="Лид", **{"Зрелость потребности": raw}), MAPPING, pipeline_id="p")

    assert result.lead["need_maturity"] == expected


def test_quantity_accepts_decimal_comma():
    result = row_to_lead(2, row(Название="Лид", **{"ID товара": "p", "Количество": "2,5"}), MAPPING, pipeline_id="p")

    assert result.lead["products"] == [{"product_id": "p", "quantity": 2.5}]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-31", dt.date(2024, 1, 31)),
        ("2024-01-31T10:00:00", dt.date(2024, 1, 31)),
        ("31.01.2024", dt.date(2024, 1, 31)),
        ("1.2.2024", dt.date(2024, 2, 1)),
        ("45000", dt.date(2023, 3, 15)),
        ("45000.75", dt.date(2023, 3, 15)),
        ("31.02.2024", None),
        ("вчера", None),
        ("0", None),
    ],
)
def test_parse_date_accepts_iso_russian_and_excel_serials(raw, expected):
    assert parse_date(raw) == expected


def test_date_fields_are_validated_when_the_contract_has_one(monkeypatch):
    # v1 has no date field; this shows the rule that applies as soon as one is listed.
    monkeypatch.setattr(rows, "DATE_FIELDS", frozenset({"description"}))

    good = row_to_lead(2, row(Название="Лид", Описание="45000"), MAPPING, pipeline_id="p")
    bad = row_to_lead(2, row(Название="Лид", Описание="позже"), MAPPING, pipeline_id="p")

    assert good.lead["description"] == "2023-03-15"
    assert bad.errors == [("Описание", "'позже' is not a date; write it as 2024-01-31 or 31.01.2024")]


def test_ids_are_stable_uuid5_values():
    first = derive_lead_id("imp-1", 5, None, None)

    assert first == derive_lead_id("imp-1", 5, None, None)
    assert uuid.UUID(first).version == 5
    assert first != derive_lead_id("imp-1", 6, None, None)
    assert first != derive_lead_id("imp-2", 5, None, None)
    # With an external id the lead is the same whichever import or row brings it.
    assert derive_lead_id("imp-1", 5, "ERP-1", "erp") == derive_lead_id("imp-9", 77, "ERP-1", "erp")
    assert derive_lead_id("imp-1", 5, "ERP-1", "erp") != derive_lead_id("imp-1", 5, "ERP-1", "site")
    assert command_id("imp-1", 5) == command_id("imp-1", 5) != command_id("imp-1", 6)
    assert command_id("imp-1", 5) != derive_lead_id("imp-1", 5, None, None)
    assert command_id("imp-1", 5) == str(uuid.uuid5(domain.IMPORT_NAMESPACE, "command:imp-1:5"))


def test_payload_validates_against_the_contract_model():
    from contracts.leads import CreateLead

    cells = [
        "Лид", "user-7", "ERP-42", "Иван", "89123456789", "ivan@example.ru", "c-1", "Ромашка", "7701234567",
        "co-1", "p-1", "2,5", "website", "Иннопром", "yandex", "cpc", "spring", "aware", "текст", "new", None,
    ]
    lead = row_to_lead(2, cells, MAPPING, pipeline_id="default").lead

    command = CreateLead.model_validate(lead)

    assert command.model_dump(mode="json", exclude_none=True, exclude_defaults=True) == lead
