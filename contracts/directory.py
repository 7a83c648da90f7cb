"""Master data from outside systems: contacts, companies, products, licences and roles."""

from pydantic import Field

from contracts.base import Payload
from contracts.common import ProductKind


class ContactUpserted(Payload):
    """A contact was created or changed upstream."""

    TYPE = "crm.contact.upserted"

    contact_id: str = Field(description="Id of the contact.")
    name: str = Field(description="Contact's full name.")
    phone: str | None = Field(None, description="Contact's phone number.")
    email: str | None = Field(None, description="Contact's email address.")
    version: int = Field(description="Upstream version; an older version than the one held is ignored.", ge=0)


class CompanyUpserted(Payload):
    """A company was created or changed upstream."""

    TYPE = "crm.company.upserted"

    company_id: str = Field(description="Id of the company.")
    name: str = Field(description="Company name.")
    inn: str | None = Field(None, description="Company taxpayer number (INN).")
    version: int = Field(description="Upstream version; an older version than the one held is ignored.", ge=0)


class ProductUpserted(Payload):
    """A catalog product was created or changed upstream."""

    TYPE = "crm.product.upserted"

    product_id: str = Field(description="Id of the product.")
    name: str = Field(description="Product name.")
    kind: ProductKind = Field(description="Simple, or configurable with options.")
    options: dict[str, list[str]] | None = Field(
        None, description="For a configurable product: option name to the values it may take."
    )
    version: int = Field(description="Upstream version; an older version than the one held is ignored.", ge=0)


class UserLicenceGranted(Payload):
    """A user was granted a licence."""

    TYPE = "crm.user.licence-granted"

    user_id: str = Field(description="The user.")
    licence: str = Field(description="The licence, e.g. `crm`.")


class UserLicenceRevoked(Payload):
    """A user's licence was revoked."""

    TYPE = "crm.user.licence-revoked"

    user_id: str = Field(description="The user.")
    licence: str = Field(description="The licence, e.g. `crm`.")


class UserRoleGranted(Payload):
    """A user was granted a role."""

    TYPE = "crm.user.role-granted"

    user_id: str = Field(description="The user.")
    role: str = Field(description="The role, e.g. `admin`.")


class UserRoleRevoked(Payload):
    """A user's role was revoked."""

    TYPE = "crm.user.role-revoked"

    user_id: str = Field(description="The user.")
    role: str = Field(description="The role, e.g. `admin`.")


class UserGroupGranted(Payload):
    """A user was added to a group (pipelines can be shown to groups only)."""

    TYPE = "crm.user.group-granted"

    user_id: str = Field(description="The user.")
    group: str = Field(description="The group, e.g. `wholesale-team`.")


class UserGroupRevoked(Payload):
    """A user was removed from a group."""

    TYPE = "crm.user.group-revoked"

    user_id: str = Field(description="The user.")
    group: str = Field(description="The group, e.g. `wholesale-team`.")


DIRECTORY_EVENT_PAYLOADS: tuple[type[Payload], ...] = (
    ContactUpserted,
    CompanyUpserted,
    ProductUpserted,
    UserLicenceGranted,
    UserLicenceRevoked,
    UserRoleGranted,
    UserRoleRevoked,
    UserGroupGranted,
    UserGroupRevoked,
)
