"""Apps and their provider credentials (never returned, never logged).

A secret is given inline (it is then encrypted at rest with the process' secret key) or as a
reference, ``env:NAME`` or ``file:/path``: the API reads it once to validate it and stores the
reference, so the database holds no secret. Changing credentials bumps the app's
``credentials_version``; every worker rebuilds its provider clients on its next batch.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic import ValidatorFunctionWrapHandler as Handler
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import APP_ID_PATTERN, Admin, AppId, ReadSession, State, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.types import LABEL
from tidings.push.credentials import ApnsCredentials, FcmCredentials
from tidings.store.apps import (
    clear_credentials,
    delete_app,
    list_apps,
    read_reference,
    secret_storage,
    set_credentials,
)
from tidings.store.models import App
from tidings.store.secrets import SecretError, reference
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/apps", tags=["apps"], dependencies=[Admin], responses=ERROR_RESPONSES
)

# the secret field of each credential kind, where a reference may stand in for the secret
SECRET_FIELDS = {"apns": ("signing_key", "certificate"), "fcm": ("service_account",)}


class CredentialsIn(BaseModel):
    """Provider credentials; each secret may be ``env:NAME`` or ``file:/path`` instead."""

    apns: ApnsCredentials | None = Field(
        default=None,
        description="APNs token (.p8) or certificate credentials; the signing key or "
        "certificate may be given as `env:NAME` or `file:/path`",
    )
    fcm: FcmCredentials | None = Field(
        default=None,
        description="FCM service account; the JSON may be given as `env:NAME` or `file:/path`",
    )
    _references: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _read_references(cls, data: Any, handler: Handler) -> Any:
        """Replace references by the secrets they name (to validate those), and remember the
        references: they, not the secrets, are what gets stored."""
        references: dict[str, str] = {}
        if isinstance(data, dict):
            data = dict(data)
            problems: list[InitErrorDetails] = []
            for provider, fields in SECRET_FIELDS.items():
                section = data.get(provider)
                if not isinstance(section, dict):
                    continue
                for field in fields:
                    value = section.get(field)
                    if not isinstance(value, str) or reference(value) is None:
                        continue
                    try:
                        data[provider] = section = {**section, field: read_reference(value)}
                    except SecretError as error:
                        problems.append(
                            InitErrorDetails(
                                type=PydanticCustomError("credential_reference", str(error)),
                                loc=(provider, field),
                                input=value,
                            )
                        )
                        continue
                    references[provider] = value
            if problems:
                raise ValidationError.from_exception_data(cls.__name__, problems)
        model = handler(data)
        model._references = references
        return model

    def has_credentials(self) -> bool:
        return self.apns is not None or self.fcm is not None


class AppBase(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=LABEL)
    description: str = Field(default="", max_length=2000)


class AppCreate(AppBase, CredentialsIn):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=APP_ID_PATTERN, description="the app's slug")
    send_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="messages per second this app may send, across every worker process; "
        "null: no limit",
    )


class AppUpdate(CredentialsIn):
    """Fields to change. Credentials given here replace the stored ones; `"apns": null` or
    `"fcm": null` removes that platform."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=LABEL)
    description: str | None = Field(default=None, max_length=2000)
    send_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="messages per second this app may send, across every worker process; "
        "null: no limit",
    )


class AppPublic(AppBase):
    id: str
    platforms: list[Literal["ios", "android"]]
    apns: dict[str, Any] | None = Field(description="APNs settings, without the key")
    fcm: dict[str, Any] | None = Field(description="FCM project, without the service account")
    secret_storage: dict[str, Literal["encrypted", "reference"]] = Field(
        description="how each provider's secret is kept: encrypted in the store, or a "
        "reference to an environment variable or file"
    )
    credentials_version: int
    send_rate_per_s: float | None
    apns_fault: str | None
    fcm_fault: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, app: App) -> AppPublic:
        platforms: list[Literal["ios", "android"]] = []
        if app.apns_config:
            platforms.append("ios")
        if app.fcm_config:
            platforms.append("android")
        storage: dict[str, Any] = {
            provider: kind
            for provider, kind in (
                ("apns", secret_storage(app.apns_secret)),
                ("fcm", secret_storage(app.fcm_secret)),
            )
            if kind is not None
        }
        return cls(
            id=app.id,
            name=app.name,
            description=app.description,
            platforms=platforms,
            apns=app.apns_config,
            fcm=app.fcm_config,
            secret_storage=storage,
            credentials_version=app.credentials_version,
            send_rate_per_s=app.send_rate_per_s,
            apns_fault=app.apns_fault,
            fcm_fault=app.fcm_fault,
            created_at=app.created_at,
            updated_at=app.updated_at,
        )


def app_not_found(app_id: str) -> ApiError:
    return ApiError(404, "app_not_found", f"no app with id {app_id!r}")


async def app_or_404(session: AsyncSession, app_id: str) -> App:
    app = await session.get(App, app_id)
    if app is None:
        raise app_not_found(app_id)
    return app


async def save_app(app: App, body: CredentialsIn, session: WriteSession, state: State) -> AppPublic:
    """The one path every save of an app takes: new credentials are set (sealed or as
    references) and the app is committed, so whatever must hold for stored credentials is
    checked here, before the commit."""
    if body.has_credentials():
        set_credentials(
            app,
            state.secrets,
            apns=body.apns,
            fcm=body.fcm,
            apns_reference=body._references.get("apns"),
            fcm_reference=body._references.get("fcm"),
        )
    public = AppPublic.of(app)
    await session.commit()
    return public


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(409))
async def create_app(body: AppCreate, session: WriteSession, state: State) -> AppPublic:
    if await session.get(App, body.id) is not None:
        raise ApiError(409, "app_exists", f"an app with id {body.id!r} already exists")
    app = App(id=body.id, name=body.name, description=body.description, credentials_version=0)
    app.send_rate_per_s = body.send_rate_per_s
    session.add(app)
    public = await save_app(app, body, session, state)
    log.info("app %s created (platforms: %s)", app.id, ", ".join(public.platforms) or "none")
    return public


@router.get("")
async def list_all(
    session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[AppPublic]:
    """Apps in id order."""
    page = await list_apps(session, after=decode_cursor(cursor, str), limit=limit)
    return Page(
        items=[AppPublic.of(app) for app in page.items], next_cursor=encode_cursor(page.next_after)
    )


@router.get("/{app_id}")
async def read_app(app_id: AppId, session: ReadSession) -> AppPublic:
    return AppPublic.of(await app_or_404(session, app_id))


@router.patch("/{app_id}")
async def update_app(
    app_id: AppId, body: AppUpdate, session: WriteSession, state: State
) -> AppPublic:
    app = await app_or_404(session, app_id)
    if body.name is not None:
        app.name = body.name
    if body.description is not None:
        app.description = body.description
    if "send_rate_per_s" in body.model_fields_set:
        app.send_rate_per_s = body.send_rate_per_s
    for provider in ("apns", "fcm"):
        if provider in body.model_fields_set and getattr(body, provider) is None:
            clear_credentials(app, provider)
    app.updated_at = utcnow()
    public = await save_app(app, body, session, state)
    if body.has_credentials():
        log.info("app %s credentials replaced (version %s)", app.id, app.credentials_version)
    return public


@router.delete("/{app_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_app(app_id: AppId, session: WriteSession) -> Response:
    """Delete the app with its devices, user mappings and API keys. The send ledger and
    interactions stay for reports."""
    if not await delete_app(session, app_id):
        raise app_not_found(app_id)
    await session.commit()
    log.info("app %s deleted", app_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
