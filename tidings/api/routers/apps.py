"""Apps and their provider credentials (never returned, never logged).

A secret is given inline (it is then encrypted at rest with the process' secret key) or as a
reference, ``env:NAME`` or ``file:/path``: the API reads it once to validate it and stores the
reference, so the database holds no secret. References are read off the event loop and in
bounded time (tidings.api.references): a file that does not answer is an error naming it.
Changing credentials bumps the app's ``credentials_version``; every worker rebuilds its
provider clients on its next batch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic import ValidatorFunctionWrapHandler as Handler
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import (
    APP_ID_PATTERN,
    Admin,
    ApiState,
    AppId,
    ReadSession,
    State,
    WriteSession,
    write_session,
)
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.references import SECRET_FIELDS, off_loop, read_body_references, secret_of
from tidings.api.types import LABEL
from tidings.push.check import (
    CredentialProblem,
    check_credentials,
    check_providers,
    narrow_to_changes,
    routes_of,
)
from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsCredentials,
    ApnsTokenCredentials,
    AppCredentials,
    FcmCredentials,
)
from tidings.store.apps import (
    clear_credentials,
    delete_app,
    list_apps,
    open_apns,
    open_fcm,
    provider_stop,
    resume_sends,
    secret_storage,
    set_credentials,
)
from tidings.store.models import App, Provider
from tidings.store.secrets import SecretError, reference
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/apps", tags=["apps"], dependencies=[Admin], responses=ERROR_RESPONSES
)

ProviderName = Literal["apns", "fcm"]
CheckResult = Literal["accepted", "rejected", "inconclusive"]
PROVIDER_NAMES: dict[str, str] = {"apns": "APNs", "fcm": "FCM"}


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
                        data[provider] = section = {**section, field: secret_of(value)}
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
        apns = getattr(model, "apns", None)
        if (
            "apns" in references
            and isinstance(apns, ApnsCertificateCredentials)
            and apns.certificate_password is not None
        ):
            # the workers read the reference again, and the password is never stored
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "credential_reference",
                            "a password-protected .p12 cannot be kept as a reference (the "
                            "password is never stored): give the certificate inline, and it "
                            "is encrypted at rest as PEM, or reference an unencrypted one",
                        ),
                        loc=("apns", "certificate_password"),
                        input="",
                    )
                ],
            )
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


class ProviderStopPublic(BaseModel):
    reason: str = Field(description="the provider's answer that stopped the sends")
    since: datetime | None = Field(description="when (unknown for stops recorded before 0.2)")


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
    stops: dict[ProviderName, ProviderStopPublic] = Field(
        description="providers the app's sends are stopped for, after a configuration fault "
        "of its credentials or setup; new credentials or POST /v1/apps/{app_id}/resume "
        "lift a stop"
    )
    apns_fault: str | None = Field(description="the reason of the APNs stop, if any")
    fcm_fault: str | None = Field(description="the reason of the FCM stop, if any")
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
        stops: dict[ProviderName, ProviderStopPublic] = {}
        for provider in ("apns", "fcm"):
            stop = provider_stop(app, provider)
            if stop is not None:
                stops[provider] = ProviderStopPublic(reason=stop.reason, since=stop.since)
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
            stops=stops,
            apns_fault=stops["apns"].reason if "apns" in stops else None,
            fcm_fault=stops["fcm"].reason if "fcm" in stops else None,
            created_at=app.created_at,
            updated_at=app.updated_at,
        )


class CredentialProblemPublic(BaseModel):
    field: str = Field(
        description="the credential field to fix (apns.key_id, apns.team_id, apns.bundle_id, "
        "fcm.project_id, fcm.private_key, ...; fields of the FCM service-account JSON are "
        "named fcm.<field>), or the provider alone when no field is to blame"
    )
    fields: list[str] = Field(
        description="every field that may be the wrong one, the likeliest first: some "
        "answers (APNs InvalidProviderToken) cannot tell a wrong key from a wrong key id or "
        "team id"
    )
    message: str
    transient: bool = Field(
        description="the check could not tell (the provider did not answer, or was busy): "
        "check again later"
    )

    @classmethod
    def of(cls, problem: CredentialProblem) -> CredentialProblemPublic:
        return cls(
            field=problem.field,
            fields=list(problem.fields),
            message=problem.message,
            transient=problem.transient,
        )


class AppSaved(AppPublic):
    warnings: list[CredentialProblemPublic] = Field(
        default_factory=list,
        description="what the credential check run on this save could not tell (a provider "
        "unreachable or busy): those credentials are saved unverified; "
        "POST /v1/apps/{app_id}/check checks them again",
    )


class ProviderCheck(BaseModel):
    provider: ProviderName
    result: CheckResult = Field(
        description="accepted: the provider takes the credentials; rejected: a field is wrong "
        "(see problems); inconclusive: the check could not tell"
    )
    problems: list[CredentialProblemPublic]


class CredentialCheck(BaseModel):
    app_id: str
    credentials_version: int
    checked_at: datetime
    accepted: bool = Field(description="every provider accepted the app's credentials")
    providers: list[ProviderCheck]


class Resume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = Field(description="the provider whose sends resume")


def sends_to(app: App, provider: Provider) -> bool:
    """Whether the app holds credentials for the provider (stopped or not): a token of a
    provider it has none for can never be sent to."""
    if provider is Provider.APNS:
        return bool(app.apns_config and app.apns_secret)
    return bool(app.fcm_secret)


def app_not_found(app_id: str) -> ApiError:
    return ApiError(404, "app_not_found", f"no app with id {app_id!r}")


async def app_or_404(session: AsyncSession, app_id: str) -> App:
    app = await session.get(App, app_id)
    if app is None:
        raise app_not_found(app_id)
    return app


@asynccontextmanager
async def writing(state: ApiState) -> AsyncIterator[AsyncSession]:
    """A write session taken only once the slow part of a save (the credential check, which
    waits on the providers) is done: on SQLite it holds the process' one writer."""
    async with asynccontextmanager(write_session)(state) as session:
        yield session


def _body_loc(field: str) -> list[str]:
    """Where a credential field sits in the request body; the service-account JSON's fields
    (fcm.project_id) inside fcm.service_account."""
    provider, _, name = field.partition(".")
    if provider == "fcm" and name and name != "service_account":
        return ["body", "fcm", "service_account", name]
    return ["body", provider, *([name] if name else [])]


async def check_on_save(
    state: ApiState,
    app_id: str,
    body: CredentialsIn,
    before: ApnsTokenCredentials | ApnsCertificateCredentials | None = None,
) -> list[CredentialProblem]:
    """Check the credentials this save brings against the configured provider endpoints.
    A definite problem refuses the save (422, naming the field); what the check could not
    tell is returned, to be answered as warnings. ``before``: the app's APNs credentials that
    worked until now, to name the wrong field of an ambiguous answer."""
    settings = state.settings
    if not body.has_credentials() or not settings.check_credentials_on_save:
        return []
    problems = await check_credentials(
        AppCredentials(app_id, 0, body.apns, body.fcm),
        routes_of(settings),
        timeout_s=settings.credential_check_timeout_s,
    )
    problems = narrow_to_changes(problems, before, body.apns)
    definite = [problem for problem in problems if not problem.transient]
    if definite:
        summary = "; ".join(str(problem) for problem in definite)
        log.info("app %s: credentials refused by the providers: %s", app_id, summary)
        raise ApiError(
            422,
            "credentials_rejected",
            f"the providers refused these credentials: {summary}",
            details=[
                {"loc": _body_loc(field), "field": field, "msg": problem.message}
                for problem in definite
                for field in problem.fields
            ],
        )
    for problem in problems:
        log.warning("app %s: credentials saved unverified: %s", app_id, problem)
    return problems


def save_credentials(app: App, body: CredentialsIn, state: ApiState) -> None:
    """Set the credentials a save brings (sealed, or as the references they were read from)."""
    if body.has_credentials():
        set_credentials(
            app,
            state.secrets,
            apns=body.apns,
            fcm=body.fcm,
            apns_reference=body._references.get("apns"),
            fcm_reference=body._references.get("fcm"),
        )


def saved(app: App, warnings: list[CredentialProblem]) -> AppSaved:
    public = AppPublic.of(app)
    return AppSaved(
        **public.model_dump(), warnings=[CredentialProblemPublic.of(w) for w in warnings]
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(409),
    dependencies=[Depends(read_body_references)],
)
async def create_app(body: AppCreate, state: State) -> AppSaved:
    """Credentials given are checked against the providers first (unless
    `TIDINGS_CHECK_CREDENTIALS_ON_SAVE` is off): a wrong field answers 422
    `credentials_rejected` naming it, and nothing is stored; a provider that cannot be
    reached is a warning in the answer."""
    async with state.db.read() as session:
        if await session.get(App, body.id) is not None:
            raise _app_exists(body.id)
    warnings = await check_on_save(state, body.id, body)
    async with writing(state) as session:
        if await session.get(App, body.id) is not None:  # created meanwhile
            raise _app_exists(body.id)
        app = App(id=body.id, name=body.name, description=body.description, credentials_version=0)
        app.send_rate_per_s = body.send_rate_per_s
        session.add(app)
        save_credentials(app, body, state)
        answer = saved(app, warnings)
    log.info("app %s created (platforms: %s)", app.id, ", ".join(answer.platforms) or "none")
    return answer


def _app_exists(app_id: str) -> ApiError:
    return ApiError(409, "app_exists", f"an app with id {app_id!r} already exists")


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


@router.patch("/{app_id}", dependencies=[Depends(read_body_references)])
async def update_app(app_id: AppId, body: AppUpdate, state: State) -> AppSaved:
    """New credentials are checked as on creation; a refused check leaves the stored app,
    and its credentials, as they were."""
    async with state.db.read() as session:
        current = await app_or_404(session, app_id)
    warnings = await check_on_save(state, app_id, body, await _working_apns(current, state, body))
    async with writing(state) as session:
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
        save_credentials(app, body, state)
        answer = saved(app, warnings)
    if body.has_credentials():
        log.info("app %s credentials replaced (version %s)", app_id, answer.credentials_version)
    return answer


async def _working_apns(
    app: App, state: ApiState, body: CredentialsIn
) -> ApnsTokenCredentials | ApnsCertificateCredentials | None:
    """The app's APNs credentials as they are, when a change of them is being saved and they
    were working (no stop recorded); None otherwise, or when they cannot be opened here."""
    if body.apns is None or provider_stop(app, "apns") is not None:
        return None
    try:
        return await _opened_apns(app, state)
    except Exception:  # only a hint for naming fields; never quoted (it may hold a secret)
        return None


async def _opened_apns(
    app: App, state: ApiState
) -> ApnsTokenCredentials | ApnsCertificateCredentials | None:
    """The stored APNs credentials, opened off the event loop (a reference may name a file)."""
    return await off_loop(_stored("apns", app), functools.partial(open_apns, app, state.secrets))


def _stored(provider: ProviderName, app: App) -> str:
    """How a stored secret is named in an error: its reference, or what it is."""
    sealed = app.apns_secret if provider == "apns" else app.fcm_secret
    return reference(sealed or "") or f"the stored {PROVIDER_NAMES[provider]} credentials"


@router.post("/{app_id}/check", responses=responses(409))
async def check_app(app_id: AppId, state: State) -> CredentialCheck:
    """Check the app's stored credentials against the providers now (an APNs request whose
    answer tells a bad key from a bad token, and an FCM `validate_only` send); nothing is
    delivered and nothing is changed."""
    async with state.db.read() as session:
        app = await app_or_404(session, app_id)
    if not app.apns_secret and not app.fcm_secret:
        raise ApiError(409, "no_credentials", f"app {app_id!r} has no provider credentials")
    unopened: dict[str, CredentialProblem] = {}
    apns = fcm = None
    try:
        apns = await _opened_apns(app, state)
    except Exception as error:  # reported for this provider; the other is still checked
        auth = (app.apns_config or {}).get("auth", "token")
        field = "apns.signing_key" if auth == "token" else "apns.certificate"
        unopened["apns"] = _unopened(field, error)
    try:
        fcm = await off_loop(_stored("fcm", app), functools.partial(open_fcm, app, state.secrets))
    except Exception as error:
        unopened["fcm"] = _unopened("fcm.service_account", error)
    settings = state.settings
    found = await check_providers(
        AppCredentials(app.id, app.credentials_version, apns, fcm),
        routes_of(settings),
        timeout_s=settings.credential_check_timeout_s,
    )
    found.update({provider: [problem] for provider, problem in unopened.items()})
    providers = [
        ProviderCheck(
            provider=provider,
            result=_result_of(found[provider]),
            problems=[CredentialProblemPublic.of(p) for p in found[provider]],
        )
        for provider in ("apns", "fcm")
        if provider in found
    ]
    log.info(
        "app %s credentials checked: %s",
        app_id,
        ", ".join(f"{p.provider} {p.result}" for p in providers),
    )
    return CredentialCheck(
        app_id=app.id,
        credentials_version=app.credentials_version,
        checked_at=utcnow(),
        accepted=all(p.result == "accepted" for p in providers),
        providers=providers,
    )


def _unopened(field: str, error: Exception) -> CredentialProblem:
    # a SecretError names the reference, never the secret; anything else only by its type
    why = str(error) if isinstance(error, SecretError) else type(error).__name__
    return CredentialProblem(
        field, f"the stored credential cannot be opened by the API ({why})", transient=True
    )


def _result_of(problems: list[CredentialProblem]) -> CheckResult:
    if not problems:
        return "accepted"
    return "inconclusive" if all(p.transient for p in problems) else "rejected"


@router.post("/{app_id}/resume", responses=responses(409))
async def resume_app(app_id: AppId, body: Resume, session: WriteSession) -> AppPublic:
    """Lift the stop recorded against one provider without new credentials, once its cause
    was fixed elsewhere (the key enabled for the environment, the topic added to the
    certificate). Resuming a provider that is not stopped changes nothing."""
    app = await app_or_404(session, app_id)
    has_credentials = app.apns_secret if body.provider == "apns" else app.fcm_secret
    if not has_credentials:
        raise ApiError(
            409,
            "no_credentials",
            f"app {app_id!r} has no {PROVIDER_NAMES[body.provider]} credentials to send with",
        )
    stop = resume_sends(app, body.provider)
    public = AppPublic.of(app)
    await session.commit()
    if stop is not None:
        log.info(
            "app %s: %s sends resumed by the admin (stopped since %s: %s)",
            app_id,
            PROVIDER_NAMES[body.provider],
            stop.since.isoformat() if stop.since else "an unknown time",
            stop.reason,
        )
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
