"""The credential check tells a bad key from a bad token and names the field to fix."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from tests.harness import BUNDLE_ID, unique_ids
from tidings.push.check import CHECK_DEVICE_TOKEN, check_credentials, check_stored_app
from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsTokenCredentials,
    FcmCredentials,
)
from tidings.push.registry import AppCredentials
from tidings.push.sender import ProviderRoutes
from tidings.settings import Settings
from tidings.sim import Answer, Scenario, Simulators
from tidings.store.apps import set_credentials
from tidings.store.db import Database
from tidings.store.models import App
from tidings.store.secrets import SecretBox

REPO = Path(__file__).resolve().parents[2]


def routes(sims: Simulators) -> ProviderRoutes:
    return ProviderRoutes.from_strings(sims.apns_endpoint, sims.fcm_endpoint, sims.ca_file)


def apns_token_auth(
    sims: Simulators, *, known: bool = True, topics: list[str] | None = None
) -> ApnsTokenCredentials:
    team, key_id, _ = unique_ids()
    if known:
        pem = sims.apns.create_signing_key(team, key_id, topics or [BUNDLE_ID])
    else:  # a key Apple never issued (or the wrong key id)
        pem = (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
    return ApnsTokenCredentials(
        team_id=team, key_id=key_id, bundle_id=BUNDLE_ID, signing_key=SecretStr(pem)
    )


def fcm_account(sims: Simulators, project: str | None = None) -> dict[str, str]:
    return sims.fcm.create_service_account(project or unique_ids()[2])


def fcm(account: dict[str, str]) -> FcmCredentials:
    return FcmCredentials(service_account=SecretStr(json.dumps(account)))


async def problems_of(
    sims: Simulators,
    apns: ApnsTokenCredentials | ApnsCertificateCredentials | None = None,
    fcm_credentials: FcmCredentials | None = None,
) -> list[tuple[str, bool]]:
    found = await check_credentials(
        AppCredentials("checked", 1, apns, fcm_credentials), routes(sims), timeout_s=10.0
    )
    return [(p.field, p.transient) for p in found]


async def test_working_credentials_have_no_problem(sims: Simulators) -> None:
    assert await problems_of(sims, apns_token_auth(sims), fcm(fcm_account(sims))) == []
    # the APNs check was one background push to a token no device has; FCM's a dry run
    [apns_record] = sims.apns.records()
    assert apns_record.token == CHECK_DEVICE_TOKEN
    assert apns_record.headers["apns-push-type"] == "background"
    assert [r.validate_only for r in sims.fcm.records()] == [True]
    assert sims.fcm.accepted() == []


async def test_a_bad_token_answer_means_the_key_is_fine(sims: Simulators) -> None:
    sims.apns.set_scenario(
        Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason="BadDeviceToken")]})
    )
    assert await problems_of(sims, apns_token_auth(sims)) == []


async def test_an_unknown_key_names_the_signing_key(sims: Simulators) -> None:
    found = await check_credentials(
        AppCredentials("checked", 1, apns_token_auth(sims, known=False), None), routes(sims)
    )
    assert [(p.field, p.transient) for p in found] == [("apns.signing_key", False)]
    assert "apns.key_id" in found[0].message
    assert "apns.team_id" in found[0].message


async def test_a_bundle_id_the_key_may_not_push_to_names_the_bundle_id(sims: Simulators) -> None:
    credentials = apns_token_auth(sims, topics=["com.example.other"])
    assert await problems_of(sims, credentials) == [("apns.bundle_id", False)]


@pytest.mark.parametrize(
    ("reason", "field"),
    [
        ("BadEnvironmentKeyInToken", "apns.environment"),
        ("InvalidProviderToken", "apns.signing_key"),
        ("TopicDisallowed", "apns.bundle_id"),
    ],
)
async def test_each_apns_answer_names_its_field(sims: Simulators, reason: str, field: str) -> None:
    sims.apns.set_scenario(Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason=reason)]}))
    assert await problems_of(sims, apns_token_auth(sims)) == [(field, False)]


async def test_a_busy_provider_is_a_transient_problem(sims: Simulators) -> None:
    sims.apns.set_scenario(
        Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason="ServiceUnavailable")]})
    )
    assert await problems_of(sims, apns_token_auth(sims)) == [("apns", True)]


async def test_certificate_auth(sims: Simulators) -> None:
    cert, key = sims.apns.create_client_certificate([BUNDLE_ID])
    credentials = ApnsCertificateCredentials(bundle_id=BUNDLE_ID, certificate=SecretStr(cert + key))
    assert await problems_of(sims, credentials) == []
    wrong, wrong_key = sims.apns.create_client_certificate(["com.example.other"])
    other = ApnsCertificateCredentials(
        bundle_id=BUNDLE_ID, certificate=SecretStr(wrong + wrong_key)
    )
    assert await problems_of(sims, other) == [("apns.bundle_id", False)]


async def test_fcm_problems_name_the_service_account(sims: Simulators) -> None:
    account = fcm_account(sims)
    refused = dict(account, private_key=fcm_account(sims)["private_key"])
    assert await problems_of(sims, fcm_credentials=fcm(refused)) == [("fcm.service_account", False)]
    other_project = dict(account, project_id=fcm_account(sims)["project_id"])
    found = await check_credentials(
        AppCredentials("checked", 1, None, fcm(other_project)), routes(sims)
    )
    assert [(p.field, p.transient) for p in found] == [("fcm.service_account", False)]
    assert "PERMISSION_DENIED" in found[0].message
    nowhere = dict(account, project_id="no-such-project-xyz")
    found = await check_credentials(AppCredentials("checked", 1, None, fcm(nowhere)), routes(sims))
    assert "NOT_FOUND" in found[0].message


async def test_the_cli_checks_a_stored_app(
    sims: Simulators, tmp_path: Path, database_url: str
) -> None:
    """`tidings apps check APP_ID`: exit 0 when the providers accept the app, 1 naming the
    field when not."""
    box = SecretBox.from_settings(None, tmp_path)
    db = Database(database_url)
    try:
        async with db.write() as session:
            for app_id, apns in (
                ("good", apns_token_auth(sims)),
                ("bad", apns_token_auth(sims, known=False)),
            ):
                app = App(id=app_id, name=app_id, credentials_version=0)
                set_credentials(app, box, apns=apns, fcm=fcm(fcm_account(sims)))
                session.add(app)
    finally:
        await db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    env |= {
        "TIDINGS_HOME": str(tmp_path),
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_APNS_ENDPOINT": sims.apns_endpoint,
        "TIDINGS_FCM_ENDPOINT": sims.fcm_endpoint,
        "TIDINGS_PROVIDER_CA_FILE": str(sims.ca_file),
        "COLUMNS": "200",
    }

    async def run(app_id: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tidings.cli import main; main()",
            "apps",
            "check",
            app_id,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, output.decode()

    code, output = await run("good")
    assert code == 0, output
    code, output = await run("bad")
    assert code == 1
    assert "apns.signing_key" in output
    settings = Settings(_env_file=None, home=tmp_path, database_url=database_url)
    with pytest.raises(LookupError, match="no app with id 'missing'"):
        await check_stored_app(settings, "missing")
