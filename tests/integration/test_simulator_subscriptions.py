"""Subscription statuses: a lapsed QuickBooks company is read-only, not refused.

Intuit's "Understand QuickBooks Online subscription statuses" page: a company that is EXPIRED, RESTRICTED,
SUSPENDED or CANCELED is limited to read-only operations, and apps read ``CompanyInfo``'s
``SubscriptionStatus`` (a ``NameValue`` entry). Writes are answered with 6190 "Invalid Company Status"
(QuickBooks-V3-PHP-SDK #211, sometimes inside HTTP 200). The older reported behaviour, 6190 on reads too, is
the opt-in style ``lapsed_reads="refuse"``.

Given a company in each status, when a client reads CompanyInfo and creates a Customer, then it gets what
that status allows, in both styles.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from local.intuit_sim import IntuitSimulator, SimulatorControlError

V3 = "{http://schema.intuit.com/finance/v3}"
READ_WRITE = ("TRIAL", "TRIALOPTIN", "SUBSCRIBED", "PAID")
READ_ONLY = ("EXPIRED", "RESTRICTED", "SUSPENDED", "CANCELED")


@dataclass
class Grant:
    realm_id: str
    user_id: str
    access_token: str


@pytest.fixture
def grant(intuit: IntuitSimulator) -> Grant:
    realm_id = intuit.control.create_company(name="Amy's Bird Sanctuary")
    user_id = intuit.control.add_user(realm_id, email="amy@example.com", admin=True)
    return Grant(realm_id, user_id, intuit.control.issue_tokens(realm_id, user_id)["access_token"])


def companyinfo(intuit: IntuitSimulator, grant: Grant, accept: str = "application/json") -> requests.Response:
    realm_id = grant.realm_id
    return requests.get(
        f"{intuit.base_url}/v3/company/{realm_id}/companyinfo/{realm_id}?minorversion=75",
        headers={"Authorization": f"Bearer {grant.access_token}", "Accept": accept},
        timeout=5,
    )


def create_customer(
    intuit: IntuitSimulator,
    grant: Grant,
    body: Any = None,
    accept: str = "application/json",
) -> requests.Response:
    return requests.post(
        f"{intuit.base_url}/v3/company/{grant.realm_id}/customer?minorversion=75",
        json={"DisplayName": "Pye's Cakes"} if body is None else body,
        headers={"Authorization": f"Bearer {grant.access_token}", "Accept": accept},
        timeout=5,
    )


def name_values(response: requests.Response) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in response.json()["CompanyInfo"]["NameValue"]}


def fault(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert "time" in body
    return body["Fault"]["Error"][0] | {"type": body["Fault"]["type"]}


def assert_6190(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status
    error = fault(response)
    assert (error["code"], error["Message"], error["type"]) == (
        "6190",
        "Invalid Company Status",
        "ValidationFault",
    )
    assert "Subscription period has ended or canceled or there was a billing problem" in error["Detail"]


def test_a_new_company_is_subscribed_and_says_so(intuit: IntuitSimulator, grant: Grant) -> None:
    response = companyinfo(intuit, grant)

    assert response.status_code == 200
    assert name_values(response)["SubscriptionStatus"] == "SUBSCRIBED"
    assert intuit.control.companies()[0]["subscription_status"] == "SUBSCRIBED"


@pytest.mark.parametrize("status", READ_WRITE + READ_ONLY)
def test_every_status_is_served_on_reads_by_default(
    intuit: IntuitSimulator, grant: Grant, status: str
) -> None:
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    response = companyinfo(intuit, grant)

    assert response.status_code == 200
    assert response.json()["CompanyInfo"]["CompanyName"] == "Amy's Bird Sanctuary"
    assert name_values(response)["SubscriptionStatus"] == status

    xml = companyinfo(intuit, grant, accept="application/xml")
    assert xml.status_code == 200
    pairs = {
        item.findtext(f"{V3}Name"): item.findtext(f"{V3}Value")
        for item in ET.fromstring(xml.content).iter(f"{V3}NameValue")
    }
    assert pairs["SubscriptionStatus"] == status


@pytest.mark.parametrize("status", READ_WRITE)
def test_read_write_statuses_accept_writes(intuit: IntuitSimulator, grant: Grant, status: str) -> None:
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    response = create_customer(intuit, grant)

    assert response.status_code == 200
    customer = response.json()["Customer"]
    assert customer["DisplayName"] == "Pye's Cakes"
    assert customer["Id"] == "1" and customer["SyncToken"] == "0"
    assert response.json()["time"].endswith("-08:00")
    assert (
        create_customer(intuit, grant, {"GivenName": "Bill", "FamilyName": "Lucchini"}).json()["Customer"][
            "DisplayName"
        ]
        == "Bill Lucchini"
    )


@pytest.mark.parametrize("status", READ_ONLY)
def test_read_only_statuses_refuse_writes_with_6190(
    intuit: IntuitSimulator, grant: Grant, status: str
) -> None:
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    assert_6190(create_customer(intuit, grant))

    xml = create_customer(intuit, grant, accept="application/xml")
    assert xml.status_code == 400
    error = ET.fromstring(xml.content).find(f"{V3}Fault/{V3}Error")
    assert error is not None and error.get("code") == "6190"

    # A refused write created nothing: paying again makes the company writable, from customer number 1.
    intuit.control.reactivate(grant.realm_id)
    assert create_customer(intuit, grant).json()["Customer"]["Id"] == "1"


@pytest.mark.parametrize("status", READ_ONLY)
def test_6190_inside_http_200_on_writes(intuit: IntuitSimulator, grant: Grant, status: str) -> None:
    """QuickBooks-V3-PHP-SDK #211: 6190 was also seen inside HTTP 200."""
    intuit.control.set_company_fault_style(grant.realm_id, status_6190=200)
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    response = create_customer(intuit, grant)

    assert_6190(response, status=200)
    assert "Customer" not in response.json()
    assert companyinfo(intuit, grant).status_code == 200  # reads are still served


@pytest.mark.parametrize("status", READ_ONLY)
@pytest.mark.parametrize("status_6190", [400, 200])
def test_refuse_style_answers_reads_with_6190_too(
    intuit: IntuitSimulator, grant: Grant, status: str, status_6190: int
) -> None:
    intuit.control.set_company_fault_style(grant.realm_id, lapsed_reads="refuse", status_6190=status_6190)  # type: ignore[arg-type]
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    read = companyinfo(intuit, grant)
    assert_6190(read, status=status_6190)
    assert "CompanyInfo" not in read.json()
    assert_6190(create_customer(intuit, grant), status=status_6190)


@pytest.mark.parametrize("status", READ_WRITE)
def test_refuse_style_changes_nothing_for_read_write_statuses(
    intuit: IntuitSimulator, grant: Grant, status: str
) -> None:
    intuit.control.set_company_fault_style(grant.realm_id, lapsed_reads="refuse")
    intuit.control.set_subscription_status(grant.realm_id, status)  # type: ignore[arg-type]

    assert name_values(companyinfo(intuit, grant))["SubscriptionStatus"] == status
    assert create_customer(intuit, grant).status_code == 200


def test_suspend_and_reactivate_are_suspended_and_subscribed(intuit: IntuitSimulator, grant: Grant) -> None:
    intuit.control.suspend(grant.realm_id)
    read = companyinfo(intuit, grant)
    assert read.status_code == 200  # read-only, not refused
    assert name_values(read)["SubscriptionStatus"] == "SUSPENDED"
    assert_6190(create_customer(intuit, grant))

    intuit.control.reactivate(grant.realm_id)
    assert name_values(companyinfo(intuit, grant))["SubscriptionStatus"] == "SUBSCRIBED"
    assert create_customer(intuit, grant).status_code == 200


@pytest.mark.parametrize(
    ("subscription", "expected"),
    [("active", "SUBSCRIBED"), ("suspended", "SUSPENDED"), ("CANCELED", "CANCELED"), ("trial", "TRIAL")],
)
def test_create_company_takes_a_status(intuit: IntuitSimulator, subscription: str, expected: str) -> None:
    realm_id = intuit.control.create_company(subscription=subscription)  # type: ignore[arg-type]
    user_id = intuit.control.add_user(realm_id)
    grant = Grant(realm_id, user_id, intuit.control.issue_tokens(realm_id, user_id)["access_token"])

    assert name_values(companyinfo(intuit, grant))["SubscriptionStatus"] == expected


def test_6190_comes_before_the_admin_check_on_writes(intuit: IntuitSimulator, grant: Grant) -> None:
    intuit.control.set_admin(grant.realm_id, grant.user_id, False)
    intuit.control.set_subscription_status(grant.realm_id, "CANCELED")

    assert_6190(create_customer(intuit, grant))
    # A read is not about the subscription: the non-admin answer.
    assert companyinfo(intuit, grant).status_code == 403


def test_customer_writes_need_a_name_and_a_token(intuit: IntuitSimulator, grant: Grant) -> None:
    missing = create_customer(intuit, grant, {"Notes": "no name"})
    assert missing.status_code == 400
    assert fault(missing)["code"] == "2020"

    garbage = requests.post(
        f"{intuit.base_url}/v3/company/{grant.realm_id}/customer",
        data=b"{not json",
        headers={
            "Authorization": f"Bearer {grant.access_token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
        timeout=5,
    )
    assert garbage.status_code == 400
    assert fault(garbage)["code"] == "2010"

    unauthenticated = requests.post(
        f"{intuit.base_url}/v3/company/{grant.realm_id}/customer",
        json={"DisplayName": "x"},
        headers={"Accept": "application/json"},
        timeout=5,
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["fault"]["error"][0]["code"] == "3200"


def test_bad_subscription_controls_are_refused(intuit: IntuitSimulator, grant: Grant) -> None:
    with pytest.raises(SimulatorControlError) as bad_status:
        intuit.control.set_subscription_status(grant.realm_id, "LAPSED")  # type: ignore[arg-type]
    assert bad_status.value.status == 400
    with pytest.raises(SimulatorControlError):
        intuit.control.set_subscription_status("no-such-realm", "PAID")
    with pytest.raises(SimulatorControlError):
        intuit.control.create_company(subscription="gone")  # type: ignore[arg-type]
    with pytest.raises(SimulatorControlError):
        intuit.control.set_company_fault_style(grant.realm_id, lapsed_reads="sometimes")  # type: ignore[arg-type]
