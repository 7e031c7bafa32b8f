"""The credential check tells a bad key from a bad token and names the field to fix."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import SecretStr, ValidationError

from tests.harness import BUNDLE_ID, unique_ids
from tidings.cli.apps import check_stored_app
from tidings.push.apns import ApnsSender
from tidings.push.check import (
    CHECK_DEVICE_TOKEN,
    TOKEN_AUTH_SUSPECTS,
    check_credentials,
    narrow_to_changes,
)
from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsTokenCredentials,
    AppCredentials,
    FcmCredentials,
)
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.settings import Settings
from tidings.sim import Answer, Scenario, Simulators
from tidings.sim.apns import NEVER_ISSUED_TOKEN
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
    assert apns_record.reason == "BadDeviceToken"
    assert sims.apns.accepted() == []
    assert [r.validate_only for r in sims.fcm.records()] == [True]
    assert sims.fcm.accepted() == []


async def test_a_bad_token_answer_means_the_key_is_fine(sims: Simulators) -> None:
    sims.apns.set_scenario(
        Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason="BadDeviceToken")]})
    )
    assert await problems_of(sims, apns_token_auth(sims)) == []


async def test_an_unknown_key_names_every_field_apple_cannot_tell_apart(
    sims: Simulators,
) -> None:
    """Apple answers InvalidProviderToken alike for a wrong key, key id or team id."""
    found = await check_credentials(
        AppCredentials("checked", 1, apns_token_auth(sims, known=False), None), routes(sims)
    )
    assert [(p.fields, p.transient) for p in found] == [
        (("apns.key_id", "apns.team_id", "apns.signing_key"), False)
    ]
    assert "InvalidProviderToken" in found[0].message
    assert str(found[0]).startswith("apns.key_id or apns.team_id or apns.signing_key: ")


async def test_a_change_names_the_field_of_an_ambiguous_answer(sims: Simulators) -> None:
    """Working credentials, then only the key id (or only the team id) changed: Apple's
    InvalidProviderToken can only be about what changed."""
    team, key_id, _ = unique_ids()
    pem = sims.apns.create_signing_key(team, key_id, [BUNDLE_ID])
    working = ApnsTokenCredentials(
        team_id=team, key_id=key_id, bundle_id=BUNDLE_ID, signing_key=SecretStr(pem)
    )
    assert await problems_of(sims, working) == []
    other_team, other_key, _ = unique_ids()
    for changed, field in (
        (working.model_copy(update={"key_id": other_key}), "apns.key_id"),
        (working.model_copy(update={"team_id": other_team}), "apns.team_id"),
    ):
        found = await check_credentials(AppCredentials("c", 1, changed, None), routes(sims))
        [narrowed] = narrow_to_changes(found, working, changed)
        assert narrowed.fields == (field,)
    # without working credentials to compare with, every suspect stays named
    found = await check_credentials(AppCredentials("c", 1, changed, None), routes(sims))
    assert narrow_to_changes(found, None, changed)[0].fields == TOKEN_AUTH_SUSPECTS


async def test_a_bundle_id_the_key_may_not_push_to_names_the_bundle_id(sims: Simulators) -> None:
    credentials = apns_token_auth(sims, topics=["com.example.other"])
    assert await problems_of(sims, credentials) == [("apns.bundle_id", False)]


@pytest.mark.parametrize(
    ("reason", "field"),
    [
        ("BadEnvironmentKeyInToken", "apns.environment"),
        ("InvalidProviderToken", "apns.key_id"),
        ("TopicDisallowed", "apns.bundle_id"),
    ],
)
async def test_each_apns_answer_names_its_field(sims: Simulators, reason: str, field: str) -> None:
    sims.apns.set_scenario(Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason=reason)]}))
    assert await problems_of(sims, apns_token_auth(sims)) == [(field, False)]


@pytest.mark.parametrize(
    "reason", ["ServiceUnavailable", "ExpiredProviderToken", "TooManyProviderTokenUpdates"]
)
async def test_an_answer_not_about_the_credentials_is_transient(
    sims: Simulators, reason: str
) -> None:
    sims.apns.set_scenario(Scenario(scripted={CHECK_DEVICE_TOKEN: [Answer(reason=reason)]}))
    assert await problems_of(sims, apns_token_auth(sims)) == [("apns", True)]


async def test_unreachable_providers_are_transient_problems(sims: Simulators) -> None:
    """Nothing listens where the routes point: the check cannot tell (a warning on save)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    nowhere = ProviderRoutes.from_strings(
        f"127.0.0.1:{port}", f"https://127.0.0.1:{port}", sims.ca_file
    )
    found = await check_credentials(
        AppCredentials("c", 1, apns_token_auth(sims), fcm(fcm_account(sims))),
        nowhere,
        timeout_s=5.0,
    )
    assert sorted((p.field, p.transient) for p in found) == [("apns", True), ("fcm", True)]


def test_the_simulator_answers_the_check_token_as_apple_would() -> None:
    """Apple answers BadDeviceToken for a token it never issued; the simulator does so for the
    check's token (and accepts every other well-formed one)."""
    assert CHECK_DEVICE_TOKEN == NEVER_ISSUED_TOKEN


async def test_certificate_auth(sims: Simulators) -> None:
    cert, key = sims.apns.create_client_certificate([BUNDLE_ID])
    credentials = ApnsCertificateCredentials(bundle_id=BUNDLE_ID, certificate=SecretStr(cert + key))
    assert await problems_of(sims, credentials) == []
    wrong, wrong_key = sims.apns.create_client_certificate(["com.example.other"])
    other = ApnsCertificateCredentials(
        bundle_id=BUNDLE_ID, certificate=SecretStr(wrong + wrong_key)
    )
    assert await problems_of(sims, other) == [("apns.bundle_id", False)]


def p12_of(cert_pem: str, key_pem: str, password: bytes | None) -> str:
    """A PKCS#12 (.p12) file as Keychain exports one, base64-encoded."""
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(b"tidings", key, certificate, None, encryption)
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("password", [b"s3cret-p12", None], ids=["with password", "without"])
async def test_a_p12_certificate_pushes_through_the_simulator(
    sims: Simulators, password: bytes | None
) -> None:
    """A .p12 (with or without a password) becomes the PEM aioapns loads; the simulator
    authenticates the connection by the certificate and delivers the push."""
    cert, key = sims.apns.create_client_certificate([BUNDLE_ID])
    credentials = ApnsCertificateCredentials(
        bundle_id=BUNDLE_ID,
        certificate=SecretStr(p12_of(cert, key, password)),
        certificate_password=SecretStr(password.decode()) if password else None,
    )
    pem = credentials.certificate.get_secret_value()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in pem
    assert "ENCRYPTED" not in pem
    assert "certificate_password" not in credentials.public_config()
    assert await problems_of(sims, credentials) == []
    sender = ApnsSender(credentials, routes=routes(sims), max_in_flight=4, timeout_s=10.0)
    try:
        token = "ab" * 32
        result = await sender.send(SendItem(token, "p12-push", PushMessage(title="from a .p12")))
    finally:
        await sender.close()
    assert result.outcome is Outcome.DELIVERED, result.describe
    [record] = sims.apns.accepted(token=token)
    assert record.provider_token is None  # certificate auth: no JWT
    assert record.payload is not None
    assert record.payload["aps"]["alert"]["title"] == "from a .p12"


def test_a_p12_that_does_not_open_names_the_password() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "t")])
    serial = x509.random_serial_number()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2034, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"t", key, certificate, None, serialization.BestAvailableEncryption(b"right")
    )
    encoded = base64.b64encode(data).decode()
    with pytest.raises(ValidationError, match="certificate_password") as wrong:
        ApnsCertificateCredentials(
            bundle_id=BUNDLE_ID,
            certificate=SecretStr(encoded),
            certificate_password=SecretStr("wrong"),
        )
    assert [e["loc"] for e in wrong.value.errors()] == [("certificate",)]
    assert encoded not in str(wrong.value)
    with pytest.raises(ValidationError, match="give its password"):
        ApnsCertificateCredentials(bundle_id=BUNDLE_ID, certificate=SecretStr(encoded))
    with pytest.raises(ValidationError, match="neither PEM"):
        ApnsCertificateCredentials(bundle_id=BUNDLE_ID, certificate=SecretStr("not base64!"))
    # an encrypted PEM key opens with its password too, and is held unencrypted
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    opened = ApnsCertificateCredentials(
        bundle_id=BUNDLE_ID,
        certificate=SecretStr(cert_pem + encrypted),
        certificate_password=SecretStr("right"),
    )
    assert "ENCRYPTED" not in opened.certificate.get_secret_value()
    with pytest.raises(ValidationError, match="give its password"):
        ApnsCertificateCredentials(bundle_id=BUNDLE_ID, certificate=SecretStr(cert_pem + encrypted))
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValidationError, match="does not belong to the certificate"):
        ApnsCertificateCredentials(
            bundle_id=BUNDLE_ID, certificate=SecretStr(cert_pem + other.decode())
        )


async def test_fcm_problems_name_the_field_of_the_service_account(sims: Simulators) -> None:
    account = fcm_account(sims)
    refused = dict(account, private_key=fcm_account(sims)["private_key"])
    assert await problems_of(sims, fcm_credentials=fcm(refused)) == [("fcm.private_key", False)]
    other_email = dict(account, client_email="someone@else.iam.gserviceaccount.com")
    assert await problems_of(sims, fcm_credentials=fcm(other_email)) == [
        ("fcm.client_email", False)
    ]
    other_project = dict(account, project_id=fcm_account(sims)["project_id"])
    found = await check_credentials(
        AppCredentials("checked", 1, None, fcm(other_project)), routes(sims)
    )
    assert [(p.field, p.transient) for p in found] == [("fcm.project_id", False)]
    assert "PERMISSION_DENIED" in found[0].message
    nowhere = dict(account, project_id="no-such-project-xyz")
    found = await check_credentials(AppCredentials("checked", 1, None, fcm(nowhere)), routes(sims))
    assert [(p.field, p.transient) for p in found] == [("fcm.project_id", False)]
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
        # what production mode (a PostgreSQL store) requires; the check itself needs no Temporal
        "TIDINGS_SECRET_KEY": (tmp_path / "secret.key").read_text().strip(),
        "TIDINGS_ADMIN_KEY": "test-admin-key",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    }

    async def run(app_id: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tidings.cli.app import main; main()",
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
