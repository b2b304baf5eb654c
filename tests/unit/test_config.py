"""Settings from the environment: sane defaults, typed values, and a bad setting fails at cold start."""

from __future__ import annotations

import traceback
from datetime import timedelta

import pytest

from qbo_health import wiring
from qbo_health.config import CheckSettings, IntuitSettings, StoreSettings, VaultSettings
from qbo_health.domain.check import CheckPolicy
from qbo_health.domain.outage import OutageThresholds
from qbo_health.errors import ConfigurationError

CREDENTIALS = {"INTUIT_CLIENT_ID": "ABclientIdValue", "INTUIT_CLIENT_SECRET": "client-secret-value"}
# Shaped like a real Intuit client secret (40 characters), so truncated error text still shows a part.
REAL_LOOKING_SECRET = "Xy7Qp2Lm9Rt4Vw8Bn3Kd6Fh1Js5Gc0Ze2Ua7Wq4N"


def shows_part_of(secret: str, text: str, fragment: int = 8) -> bool:
    return any(secret[i : i + fragment] in text for i in range(len(secret) - fragment + 1))


def full_error_text(error: BaseException) -> str:
    """Everything a cold-start failure would put in the Lambda log: message and chained causes."""
    return "".join(traceback.format_exception(error))


# ---------------------------------------------------------------------------------------------- store


def test_store_settings_default_to_the_service_table_names():
    settings = StoreSettings.from_env({})

    assert settings.connections_table == "qbo-health-connections"
    assert settings.history_table == "qbo-health-history"
    assert settings.control_table == "qbo-health-control"
    assert settings.oauth_states_table == "qbo-health-oauth-states"
    assert settings.aws_region == "us-east-1"


def test_store_settings_take_the_deployed_table_names_from_upper_case_variables():
    settings = StoreSettings.from_env(
        {
            "CONNECTIONS_TABLE": "stack-ConnectionsTable-1",
            "HISTORY_TABLE": "stack-HistoryTable-1",
            "AWS_REGION": "eu-west-1",
            "connections_table": "lower-case-is-not-ours",
            "UNRELATED": "ignored",
        }
    )

    assert settings.connections_table == "stack-ConnectionsTable-1"
    assert settings.history_table == "stack-HistoryTable-1"
    assert settings.control_table == "qbo-health-control"
    assert settings.aws_region == "eu-west-1"


def test_without_a_mapping_settings_come_from_the_process_environment(monkeypatch):
    monkeypatch.setenv("TOKEN_KEY_ID", "alias/from-the-process")
    monkeypatch.setenv("DATA_KEY_MAX_USES", "17")

    settings = VaultSettings.from_env()

    assert settings.token_key_id == "alias/from-the-process"
    assert settings.data_key_max_uses == 17


def test_settings_are_frozen():
    settings = StoreSettings.from_env({})

    with pytest.raises(ValueError, match="frozen"):
        settings.connections_table = "other"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- vault


def test_vault_settings_parse_numbers_and_default_the_data_key_limits():
    defaults = VaultSettings.from_env({"TOKEN_KEY_ID": "key-1"})
    tuned = VaultSettings.from_env(
        {"TOKEN_KEY_ID": "key-1", "DATA_KEY_MAX_AGE_SECONDS": "60", "DATA_KEY_MAX_USES": "500"}
    )

    assert (defaults.data_key_max_age_seconds, defaults.data_key_max_uses) == (300, 10_000)
    assert (tuned.data_key_max_age_seconds, tuned.data_key_max_uses) == (60, 500)


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({}, "token_key_id"),
        ({"TOKEN_KEY_ID": ""}, "token_key_id"),
        ({"TOKEN_KEY_ID": "k", "DATA_KEY_MAX_AGE_SECONDS": "five minutes"}, "data_key_max_age_seconds"),
        ({"TOKEN_KEY_ID": "k", "DATA_KEY_MAX_AGE_SECONDS": "0"}, "data_key_max_age_seconds"),
        ({"TOKEN_KEY_ID": "k", "DATA_KEY_MAX_AGE_SECONDS": "3601"}, "data_key_max_age_seconds"),
        ({"TOKEN_KEY_ID": "k", "DATA_KEY_MAX_AGE_SECONDS": "2.5"}, "data_key_max_age_seconds"),
        ({"TOKEN_KEY_ID": "k", "DATA_KEY_MAX_USES": "0"}, "data_key_max_uses"),
    ],
    ids=[
        "missing-key",
        "empty-key",
        "not-a-number",
        "zero-age",
        "age-over-an-hour",
        "fractional",
        "zero-uses",
    ],
)
def test_bad_vault_settings_fail_at_cold_start_naming_the_setting(environ, field):
    with pytest.raises(ConfigurationError, match="VaultSettings") as raised:
        VaultSettings.from_env(environ)

    assert field in str(raised.value)


# ---------------------------------------------------------------------------------------------- check


def test_check_settings_defaults():
    settings = CheckSettings.from_env({"CHECK_QUEUE_URL": "https://sqs/queue"})

    assert settings.check_queue_native_delay is True
    assert settings.refresh_after_hours == 20.0
    assert settings.probe_interval_hours == 20.0
    assert settings.lease_seconds == 120
    assert settings.confirm_delay_seconds == 900
    assert settings.reauth_warning_days == 30
    assert settings.schedule_slots == 24
    assert settings.scan_segments == 4
    assert (settings.outage_transient_share, settings.outage_new_issue_share) == (0.5, 0.2)
    assert settings.outage_min_checks == 20


def test_check_settings_parse_strings_from_the_environment():
    settings = CheckSettings.from_env(
        {
            "CHECK_QUEUE_URL": "http://127.0.0.1:5000/123456789012/checks",
            "CHECK_QUEUE_NATIVE_DELAY": "false",
            "REFRESH_AFTER_HOURS": "12.5",
            "CONFIRM_DELAY_SECONDS": "0",
            "OUTAGE_TRANSIENT_SHARE": "0.75",
            "OUTAGE_MIN_CHECKS": "5",
        }
    )

    assert settings.check_queue_native_delay is False
    assert settings.refresh_after_hours == 12.5
    assert settings.confirm_delay_seconds == 0
    assert settings.outage_transient_share == 0.75
    assert settings.outage_min_checks == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHECK_QUEUE_URL", ""),
        ("CHECK_QUEUE_NATIVE_DELAY", "sometimes"),
        ("REFRESH_AFTER_HOURS", "0"),
        ("REFRESH_AFTER_HOURS", "73"),
        ("REFRESH_AFTER_HOURS", "twenty"),
        ("LEASE_SECONDS", "5"),
        ("CONFIRM_DELAY_SECONDS", "901"),  # SQS cannot delay a message longer
        ("CONFIRM_DELAY_SECONDS", "-1"),
        ("SCHEDULE_SLOTS", "25"),
        ("OUTAGE_TRANSIENT_SHARE", "1.5"),
        ("OUTAGE_NEW_ISSUE_SHARE", "0"),
        ("OUTAGE_MIN_CHECKS", "0"),
    ],
)
def test_bad_check_settings_fail_at_cold_start(name, value):
    with pytest.raises(ConfigurationError, match="CheckSettings") as raised:
        CheckSettings.from_env({"CHECK_QUEUE_URL": "q", name: value})

    assert name.lower() in str(raised.value)


def test_the_check_queue_url_is_required():
    with pytest.raises(ConfigurationError, match="check_queue_url"):
        CheckSettings.from_env({})


def test_check_settings_drive_the_check_policy_and_the_outage_guard():
    settings = CheckSettings.from_env(
        {
            "CHECK_QUEUE_URL": "q",
            "REFRESH_AFTER_HOURS": "12",
            "PROBE_INTERVAL_HOURS": "6",
            "CONFIRM_DELAY_SECONDS": "300",
            "REAUTH_WARNING_DAYS": "60",
            "OUTAGE_TRANSIENT_SHARE": "0.4",
            "OUTAGE_NEW_ISSUE_SHARE": "0.1",
            "OUTAGE_MIN_CHECKS": "50",
        }
    )

    policy = wiring.check_policy(settings)
    thresholds = wiring.outage_thresholds(settings)

    assert policy.refresh_after == timedelta(hours=12)
    assert policy.probe_interval == timedelta(hours=6)
    assert policy.confirm_delay == timedelta(minutes=5)
    assert policy.reauth_warning == timedelta(days=60)
    assert thresholds == OutageThresholds(transient_share=0.4, new_issue_share=0.1, min_checks=50)


def test_default_settings_give_the_domain_defaults():
    settings = CheckSettings.from_env({"CHECK_QUEUE_URL": "q"})

    assert wiring.check_policy(settings) == CheckPolicy()
    assert wiring.outage_thresholds(settings) == OutageThresholds()


# ---------------------------------------------------------------------------------------------- intuit


def test_intuit_defaults_to_the_sandbox_with_inline_credentials():
    settings = IntuitSettings.from_env(CREDENTIALS)

    assert settings.intuit_environment == "sandbox"
    assert settings.intuit_base_url is None
    assert settings.intuit_client_id == "ABclientIdValue"
    assert settings.intuit_client_secret is not None
    assert settings.intuit_client_secret.get_secret_value() == "client-secret-value"
    assert settings.intuit_timeout_seconds == 10.0


def test_the_client_secret_never_shows_in_the_settings_repr():
    settings = IntuitSettings.from_env(CREDENTIALS)

    assert "client-secret-value" not in repr(settings)
    assert "client-secret-value" not in str(settings)


def test_a_secrets_manager_secret_name_replaces_inline_credentials():
    settings = IntuitSettings.from_env(
        {"INTUIT_ENVIRONMENT": "production", "INTUIT_CREDENTIALS_SECRET": "qbo-health/intuit"}
    )

    assert settings.intuit_environment == "production"
    assert settings.intuit_credentials_secret == "qbo-health/intuit"
    assert settings.intuit_client_id is None


def test_local_mode_points_at_the_simulator():
    settings = IntuitSettings.from_env(
        {**CREDENTIALS, "INTUIT_ENVIRONMENT": "local", "INTUIT_BASE_URL": "http://127.0.0.1:8123"}
    )

    assert settings.intuit_base_url == "http://127.0.0.1:8123"


def test_the_sandbox_uses_intuits_sandbox_hosts_unless_a_stand_in_is_named():
    from qbo_health.adapters.intuit import IntuitEndpoints

    plain = IntuitSettings.from_env({**CREDENTIALS, "INTUIT_ENVIRONMENT": "sandbox"})
    stand_in = IntuitSettings.from_env(
        {**CREDENTIALS, "INTUIT_ENVIRONMENT": "sandbox", "INTUIT_BASE_URL": "http://127.0.0.1:8123"}
    )

    real = IntuitEndpoints.of_environment(plain.intuit_environment, plain.intuit_base_url)
    assert real.api_base == "https://sandbox-quickbooks.api.intuit.com"
    assert real.authorize_url == "https://appcenter.intuit.com/connect/oauth2"
    posing = IntuitEndpoints.of_environment(stand_in.intuit_environment, stand_in.intuit_base_url)
    assert posing.token_url == "http://127.0.0.1:8123/oauth2/v1/tokens/bearer"
    assert posing.authorize_url == "http://127.0.0.1:8123/connect/oauth2"


def test_production_refuses_a_stand_in_base_url():
    with pytest.raises(ConfigurationError, match="never production"):
        IntuitSettings.from_env(
            {**CREDENTIALS, "INTUIT_ENVIRONMENT": "production", "INTUIT_BASE_URL": "http://127.0.0.1:8123"}
        )


@pytest.mark.parametrize("base_url", [None, ""], ids=["absent", "empty"])
def test_local_mode_without_a_base_url_is_a_configuration_error(base_url):
    environ = {**CREDENTIALS, "INTUIT_ENVIRONMENT": "local"}
    if base_url is not None:
        environ["INTUIT_BASE_URL"] = base_url

    with pytest.raises(ConfigurationError, match="INTUIT_BASE_URL is required"):
        IntuitSettings.from_env(environ)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"INTUIT_CLIENT_ID": "ABclientIdValue"},
        {"INTUIT_CLIENT_SECRET": "client-secret-value"},
    ],
    ids=["nothing", "id-only", "secret-only"],
)
def test_missing_credentials_are_a_configuration_error(environ):
    with pytest.raises(ConfigurationError, match="INTUIT_CREDENTIALS_SECRET"):
        IntuitSettings.from_env(environ)


def test_empty_credentials_are_a_configuration_error():
    with pytest.raises(ConfigurationError):
        IntuitSettings.from_env({"INTUIT_CLIENT_ID": "", "INTUIT_CLIENT_SECRET": ""})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INTUIT_ENVIRONMENT", "staging"),
        ("INTUIT_TIMEOUT_SECONDS", "0"),
        ("INTUIT_TIMEOUT_SECONDS", "21"),
        ("INTUIT_TIMEOUT_SECONDS", "ten"),
    ],
)
def test_bad_intuit_settings_fail_at_cold_start(name, value):
    with pytest.raises(ConfigurationError, match="IntuitSettings") as raised:
        IntuitSettings.from_env({**CREDENTIALS, name: value})

    assert name.lower() in str(raised.value)


def test_a_rejected_setting_does_not_echo_the_client_secret():
    with pytest.raises(ConfigurationError) as raised:
        IntuitSettings.from_env({"INTUIT_CLIENT_SECRET": REAL_LOOKING_SECRET, "INTUIT_TIMEOUT_SECONDS": "0"})

    assert not shows_part_of(REAL_LOOKING_SECRET, full_error_text(raised.value))


@pytest.mark.parametrize(
    "environ",
    [
        {
            "INTUIT_ENVIRONMENT": "local",
            "INTUIT_CLIENT_ID": "AB",
            "INTUIT_CLIENT_SECRET": REAL_LOOKING_SECRET,
        },
        {"INTUIT_CLIENT_SECRET": REAL_LOOKING_SECRET},
    ],
    ids=["local-without-base-url", "secret-without-id"],
)
def test_an_incomplete_intuit_configuration_does_not_echo_the_client_secret(environ):
    with pytest.raises(ConfigurationError) as raised:
        IntuitSettings.from_env(environ)

    assert not shows_part_of(REAL_LOOKING_SECRET, full_error_text(raised.value))


def test_branding_defaults_and_a_support_contact_that_is_a_url_or_an_address():
    from qbo_health.config import BrandingSettings

    default = BrandingSettings.from_env({})
    assert default.product_name == "QBO Connection Health" and default.default_locale == "en-US"
    assert default.support_url is None and default.support_email is None
    by_mail = BrandingSettings.from_env({"SUPPORT_CONTACT": "help@acme.example", "LOGO_URL": ""})
    assert by_mail.support_email == "help@acme.example" and by_mail.support_url is None
    by_url = BrandingSettings.from_env({"SUPPORT_CONTACT": "https://acme.example/help"})
    assert by_url.support_url == "https://acme.example/help" and by_url.support_email is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCENT_COLOR", "red;background:url(https://evil.example)"),
        ("LOGO_URL", "javascript:alert(1)"),
        ("LOGO_URL", 'https://cdn.example/logo.png" onerror="x'),
        ("SUPPORT_CONTACT", "not a contact"),
        ("SENDER_NAME", "Acme\r\nBcc: victim@example.com"),
        ("DEFAULT_LOCALE", "de-DE"),
        ("PRODUCT_NAME", ""),
    ],
)
def test_a_branding_value_that_could_break_a_notice_fails_at_cold_start(name, value):
    from qbo_health.config import BrandingSettings

    with pytest.raises(ConfigurationError) as refused:
        BrandingSettings.from_env({name: value})
    assert name.lower() in str(refused.value)


def test_which_issues_also_notify_the_authorizing_user_is_a_comma_list():
    from qbo_health.config import EscalationSettings

    base = {"EVENT_BUS_NAME": "bus", "SENDER_EMAIL": "n@example.com"}
    assert EscalationSettings.from_env(base).notify_authorizer == {
        "ADMIN_ACCESS_LOST",
        "AUTHORIZATION_EXPIRED",
        "REAUTH_DUE",
    }
    chosen = EscalationSettings.from_env(base | {"NOTIFY_AUTHORIZER": " SUBSCRIPTION_LAPSED , REAUTH_DUE"})
    assert chosen.notify_authorizer == {"SUBSCRIPTION_LAPSED", "REAUTH_DUE"}
    assert EscalationSettings.from_env(base | {"NOTIFY_AUTHORIZER": ""}).notify_authorizer == frozenset()
    with pytest.raises(ConfigurationError, match="notify_authorizer"):
        EscalationSettings.from_env(base | {"NOTIFY_AUTHORIZER": "EVERYTHING"})
