"""The operations console's customers, fault switches and system figures, on the fake services."""

from __future__ import annotations

import re
import time

from flask import Flask
from flask.testing import FlaskClient

from shopkit import faults
from shopkit.fault_routes import SAGA_STEPS
from shopkit.service_client import ServiceResponse
from storefront.faults import fault_form, fingerprint
from tests.support.storefront import Call, FakeServices
from tests.support.storefront_answers import page_of

ADA = {"username": "ada", "full_name": "Ada Lovelace", "email": "ada@example.com",
       "balance": "10.00", "created_at": "2025-01-01T10:00:00+00:00", "is_active": True,
       "deactivated_at": None}  # fmt: skip
BOB = {**ADA, "username": "bob", "full_name": "Bob Stone", "is_active": False,
       "deactivated_at": "2025-02-03T04:05:06+00:00"}  # fmt: skip
LATENCY = {"kind": "latency", "route": "POST /sales", "latency_ms": 500, "hang_s": 30.0,
           "status": 503, "rate": 1.0}  # fmt: skip
FLAKY = {"kind": "error", "dependency": "inventory", "hang_s": 30.0, "status": 503, "rate": 0.25}
HTML_QUOTE = "&#34;"


# --- customers -----------------------------------------------------------------------------------


def test_customers_show_whether_active_and_offer_the_matching_action(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("customers", "GET", "/customers", 200, page_of(ADA, BOB))
    page = client.get("/admin/customers?active=all")
    assert page.status_code == 200
    assert fake.made("customers", "GET", "/customers")[0].params == {
        "page": 1, "page_size": 20}  # "all" sends no active filter  # fmt: skip
    ada = re.search(r'data-username="ada">.*?</tr>', page.text, re.S)
    bob = re.search(r'data-username="bob">.*?</tr>', page.text, re.S)
    assert ada and bob
    assert ">active<" in ada.group(0) and "/admin/customers/ada/deactivate" in ada.group(0)
    assert "reactivate" not in ada.group(0)
    assert ">deactivated<" in bob.group(0) and "since 2025-02-03 04:05:06" in bob.group(0)
    assert "/admin/customers/bob/reactivate" in bob.group(0)
    assert 'deactivate"' not in bob.group(0)


def test_reactivate_calls_the_reactivation_endpoint(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("customers", "POST", "/customers/bob/reactivation", 200, {**BOB, "is_active": True})
    fake.on("customers", "GET", "/customers", 200, page_of({**BOB, "is_active": True}))
    response = client.post("/admin/customers/bob/reactivate", follow_redirects=True)
    (call,) = fake.made("customers", "POST", "/customers/bob/reactivation")
    assert call.token == admin
    assert "bob is active again and can log in." in response.text
    assert fake.made("customers", "GET", "/customers")[-1].params["q"] == "bob"


def test_deactivate_and_reactivate_show_the_services_refusal(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.on("customers", "DELETE", "/customers/root", 409, {
        "code": "cannot_deactivate_admin",
        "detail": "Admin accounts cannot be deactivated here."})  # fmt: skip
    fake.on("customers", "POST", "/customers/ghost/reactivation", 404,
            {"code": "not_found", "detail": "No customer ghost."})  # fmt: skip
    fake.on("customers", "GET", "/customers", 200, page_of())
    refused = client.post("/admin/customers/root/deactivate", data={"confirm": "yes"},
                          follow_redirects=True)  # fmt: skip
    assert "Admin accounts cannot be deactivated here." in refused.text
    missing = client.post("/admin/customers/ghost/reactivate", follow_redirects=True)
    assert "No customer ghost." in missing.text


def test_customer_actions_need_a_csrf_token(make_app, fake: FakeServices) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    browser = app.test_client()
    for path in ("/admin/customers/bob/reactivate", "/admin/customers/bob/deactivate"):
        assert browser.post(path).status_code == 400
    assert not fake.made("customers", "POST", "/customers/bob/reactivation")


# --- fault switches ------------------------------------------------------------------------------


def faults_of(fake: FakeServices, service: str, faults: list[dict]) -> list[Call]:
    """Serve ``faults`` at ``/admin/faults`` of ``service``, with a PUT that replaces them."""
    state = {"faults": list(faults)}
    puts: list[Call] = []

    def put(call: Call) -> ServiceResponse:
        puts.append(call)
        state["faults"] = list(call.json["faults"])
        return ServiceResponse(200, {"faults": list(state["faults"])})

    fake.handle(service, "GET", "/admin/faults",
                lambda _call: ServiceResponse(200, {"faults": list(state["faults"])}))  # fmt: skip
    fake.handle(service, "PUT", "/admin/faults", put)
    return puts


def test_system_page_lists_live_faults_in_words_with_a_form_per_service(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    faults_of(fake, "sales", [LATENCY, FLAKY])
    faults_of(fake, "inventory", [])
    page = client.get("/admin/system")
    assert page.status_code == 200
    assert "latency 500 ms on requests to POST /sales, always" in page.text
    assert "error on calls to inventory, 25% of the time" in page.text
    sales = re.search(r'<section class="card fault-switches" id="faults-sales".*?</section>',
                      page.text, re.S)  # fmt: skip
    assert sales and sales.group(0).count('class="small switch-off"') == 2
    assert 'name="fault-sales-kind"' in sales.group(
        0
    ) and "right after the debit step" in sales.group(0)
    inventory = re.search(r'id="faults-inventory".*?</section>', page.text, re.S)
    assert inventory and "No fault is on." in inventory.group(0)
    assert "right after the debit step" not in inventory.group(0)  # only sales has a saga
    assert "right after a consumer committed, before its ack" in inventory.group(0)
    assert "the broker, when the relay publishes" in inventory.group(0)
    assert "calls to inventory" not in inventory.group(0)  # not a dependency of itself
    # htmx's refresh carries the readable list but never the forms (a half-typed form stays).
    fragment = client.get("/admin/system", headers={"HX-Request": "true"}).text
    assert "latency 500 ms on requests to POST /sales" in fragment and "fault-form" not in fragment


def test_switching_a_fault_on_adds_it_to_the_set(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    puts = faults_of(fake, "sales", [FLAKY])
    response = client.post("/admin/system/sales/faults", data={
        "fault-sales-kind": "latency", "fault-sales-target": "route", "fault-sales-route": " POST /cart/checkout ",
        "fault-sales-latency_ms": "250", "fault-sales-rate": "0.5"}, follow_redirects=True)  # fmt: skip
    (put,) = puts
    assert put.token == admin
    assert put.json == {"faults": [FLAKY, {"kind": "latency", "route": "POST /cart/checkout",
                                           "latency_ms": 250, "rate": 0.5}]}  # fmt: skip
    assert "sales: switched on latency 250 ms on requests to POST /cart/checkout, 50% of the time" \
        in response.text  # fmt: skip


def test_switching_on_a_dependency_hang_and_a_crash(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    puts = faults_of(fake, "sales", [])
    client.post("/admin/system/sales/faults", data={"fault-sales-kind": "hang", "fault-sales-rate": "1",
                "fault-sales-target": "dependency:customers", "fault-sales-hang_s": "2.5"})  # fmt: skip
    client.post("/admin/system/sales/faults", data={"fault-sales-kind": "crash", "fault-sales-rate": "0.2",
                "fault-sales-target": "after_step:debit"})  # fmt: skip
    assert puts[0].json["faults"] == [
        {"kind": "hang", "dependency": "customers", "hang_s": 2.5, "rate": 1.0}]  # fmt: skip
    assert puts[1].json["faults"][-1] == {"kind": "crash", "after_step": "debit", "rate": 0.2}


def test_switching_on_broker_faults_and_an_event_crash_point(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    puts = faults_of(fake, "notifications", [])
    form = "/admin/system/notifications/faults"
    client.post(form, data={"fault-notifications-kind": "error", "fault-notifications-rate": "1",
                "fault-notifications-target": "broker:consume"})  # fmt: skip
    client.post(form, data={"fault-notifications-kind": "crash", "fault-notifications-rate": "0.5",
                "fault-notifications-target": "after_step:commit"})  # fmt: skip
    client.post(form, data={"fault-notifications-kind": "hang", "fault-notifications-rate": "1",
                "fault-notifications-target": "broker"})  # fmt: skip
    assert puts[0].json["faults"] == [
        {"kind": "error", "dependency": "broker", "operation": "consume", "rate": 1.0}]  # fmt: skip
    assert puts[1].json["faults"][-1] == {"kind": "crash", "after_step": "commit", "rate": 0.5}
    assert puts[2].json["faults"][-1] == {"kind": "hang", "dependency": "broker", "rate": 1.0}


def test_a_fault_the_form_cannot_describe_is_refused_before_any_call(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    puts = faults_of(fake, "sales", [])
    cases = [
        ({"fault-sales-kind": "latency", "fault-sales-target": "route", "fault-sales-route": "/sales"},
         "A latency fault needs its latency in milliseconds."),
        ({"fault-sales-kind": "crash", "fault-sales-target": "route", "fault-sales-route": "/sales"},
         "A crash applies right after a saga step or at an events crash point, and only a crash does."),
        ({"fault-sales-kind": "error", "fault-sales-target": "route", "fault-sales-route": "  "},
         "Give the route"),
        ({"fault-sales-kind": "error", "fault-sales-target": "route", "fault-sales-route": "/x", "fault-sales-rate": "2"},
         "Share of requests hit (0-1)"),
        ({"fault-sales-kind": "explode", "fault-sales-target": "route", "fault-sales-route": "/x"}, "Fault:"),
        ({"fault-sales-kind": "error", "fault-sales-target": "dependency:sales"}, "On:"),
    ]  # fmt: skip
    for data, message in cases:
        response = client.post("/admin/system/sales/faults", data={"fault-sales-rate": "1", **data},
                               follow_redirects=True)  # fmt: skip
        assert response.status_code == 200
        assert message in response.text, (data, response.text)
    assert puts == [] and not fake.made("sales", "PUT", "/admin/faults")
    assert client.post("/admin/system/nowhere/faults").status_code == 404


def test_the_services_refusal_of_a_fault_is_shown_per_field(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    faults_of(fake, "inventory", [])
    fake.on("inventory", "PUT", "/admin/faults", 422, {
        "code": "validation_error", "detail": "The request is not valid: see errors.",
        "errors": {"faults": {"0": {"latency_ms": ["Must be between 1 and 60000."]}}}})  # fmt: skip
    response = client.post("/admin/system/inventory/faults", data={
        "fault-inventory-kind": "latency", "fault-inventory-target": "route", "fault-inventory-route": "/products",
        "fault-inventory-latency_ms": "5", "fault-inventory-rate": "1"}, follow_redirects=True)  # fmt: skip
    assert "The request is not valid: see errors. faults.0.latency_ms: Must be between 1 and " \
        "60000." in response.text  # fmt: skip


def test_switching_one_fault_off_keeps_the_others(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    puts = faults_of(fake, "sales", [LATENCY, FLAKY])
    page = client.get("/admin/system").text
    shown = fingerprint(FLAKY).replace('"', HTML_QUOTE)
    assert f'value="{shown}"' in page
    response = client.post("/admin/system/sales/faults/off", data={"fault": fingerprint(FLAKY)},
                           follow_redirects=True)  # fmt: skip
    assert puts[0].json == {"faults": [LATENCY]}
    assert "sales: switched off error on calls to inventory, 25% of the time." in response.text
    again = client.post("/admin/system/sales/faults/off", data={"fault": fingerprint(FLAKY)},
                        follow_redirects=True)  # fmt: skip
    assert "That fault is no longer switched on." in again.text and len(puts) == 1
    nonsense = client.post("/admin/system/sales/faults/off", data={"fault": "[1"},
                           follow_redirects=True)  # fmt: skip
    assert "Choose a fault to switch off." in nonsense.text and len(puts) == 1


def test_switch_all_off_deletes_the_set(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    faults_of(fake, "reviews", [LATENCY])
    fake.on("reviews", "DELETE", "/admin/faults", 204, {})
    response = client.post("/admin/system/reviews/faults/clear")
    assert response.status_code == 302 and response.headers["Location"].endswith("#faults-reviews")
    assert fake.made("reviews", "DELETE", "/admin/faults")[0].token == admin


def test_production_mode_shows_that_faults_are_disabled(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    disabled = {"code": "faults_disabled", "detail": "Fault injection is off in production mode."}
    for name in ("customers", "inventory", "sales", "reviews"):
        fake.on(name, "GET", "/admin/faults", 403, disabled)
    fake.on("sales", "PUT", "/admin/faults", 403, disabled)
    page = client.get("/admin/system")
    assert page.status_code == 200
    assert page.text.count("Fault injection is off in production mode.") == 8  # table + cards
    assert "fault-form" not in page.text
    refused = client.post("/admin/system/sales/faults", data={
        "fault-sales-kind": "error", "fault-sales-target": "route", "fault-sales-route": "/sales",
        "fault-sales-rate": "1"}, follow_redirects=True)  # fmt: skip
    assert 'class="flash error"' in refused.text
    assert "Fault injection is off in production mode." in refused.text


# --- system figures ------------------------------------------------------------------------------

BUSINESS = """# TYPE shop_sales_total counter
shop_sales_total{status="completed",failure_code=""} %(completed)d
shop_sales_total{status="failed",failure_code="insufficient_funds"} %(refused)d
shop_sales_total{status="cancelled",failure_code=""} 1
# TYPE shop_sales_pending gauge
shop_sales_pending{status="pending"} 3
shop_sales_pending{status="cancelling"} 1
# TYPE shop_sales_oldest_pending_age_seconds gauge
shop_sales_oldest_pending_age_seconds{status="pending"} 42.4
shop_sales_oldest_pending_age_seconds{status="cancelling"} 0
# TYPE shop_recovery_runs_total counter
shop_recovery_runs_total 17
# TYPE shop_recovered_sales_total counter
shop_recovered_sales_total{outcome="completed"} 4
shop_recovered_sales_total{outcome="cancelled"} 2
shop_recovered_sales_total{outcome="still_pending"} 1
"""


def test_system_page_shows_outcomes_unsettled_orders_and_recoveries(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    fake.texts[("sales", "/metrics")] = (200, BUSINESS % {"completed": 10, "refused": 2})
    first = client.get("/admin/system").text
    assert re.search(r'id="pending">3 <span class="figure">oldest 42 s', first)
    assert re.search(r'id="cancelling">1 <small', first)  # age 0: not shown
    recoveries = re.search(r'id="recoveries">(.*?)</dd>', first, re.S)
    assert recoveries
    assert "cancelled 2" in recoveries.group(1) and "completed 4" in recoveries.group(1)
    assert "still_pending 1" in recoveries.group(1) and "in 17 recovery passes" in recoveries.group(
        1
    )
    assert "does not export" not in first and not fake.made("sales", "GET", "/sales")
    time.sleep(0.6)
    fake.texts[("sales", "/metrics")] = (200, BUSINESS % {"completed": 16, "refused": 5})
    second = client.get("/admin/system", headers={"HX-Request": "true"}).text
    rates = dict(re.findall(r'<span class="figure">([a-z_ ()]+) (\d+\.\d+)</span>', second))
    assert 4 < float(rates["completed"]) < 11
    assert 1.5 < float(rates["failed (insufficient_funds)"]) < 5.5
    assert float(rates["cancelled"]) == 0


def test_business_metrics_without_samples_yet_mean_zero_not_a_fallback(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    # Several workers pool their samples: a counter nothing counted yet is simply absent.
    fake.texts[("sales", "/metrics")] = (200, "# TYPE shop_sales_pending gauge\n"
        'shop_sales_pending{status="pending"} 0\nshop_sales_pending{status="cancelling"} 0\n')  # fmt: skip
    client.get("/admin/system")
    time.sleep(0.6)
    page = client.get("/admin/system").text
    assert re.search(r'id="sales-rate">none', page)
    assert re.search(r'id="recoveries">none yet', page)
    assert "does not export" not in page and not fake.made("sales", "GET", "/sales")


def test_without_business_metrics_pending_and_cancelling_come_from_the_sales_api(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    totals = {"pending": 5, "cancelling": 2}
    fake.handle("sales", "GET", "/sales",
                lambda call: ServiceResponse(200, {**page_of(), "total": totals[call.params["status"]]}))  # fmt: skip
    fake.texts[("sales", "/metrics")] = (200, "# TYPE flask_http_request_total counter\n")
    page = client.get("/admin/system").text
    assert re.search(r'id="pending">5 ', page) and re.search(r'id="cancelling">2 ', page)
    assert "Recoveries appear once sales exports shop_recovered_sales_total." in page
    assert re.search(r'id="recoveries">—', page)


def test_under_the_gateways_prefix_the_console_forms_and_redirects_carry_it(
    client: FlaskClient, fake: FakeServices, admin: str
) -> None:
    shop = {"X-Forwarded-Prefix": "/shop"}
    faults_of(fake, "sales", [LATENCY])
    fake.on("customers", "GET", "/customers", 200, page_of(ADA, BOB))
    for path in ("/admin/system", "/admin/customers?active=all"):
        page = client.get(path, headers=shop).text
        actions = re.findall(r'action="([^"]*)"', page)
        links = [u for u in re.findall(r'href="([^"]*)"', page) if u.startswith("/")]
        assert all(a.startswith("/shop/") for a in actions + links), (path, actions, links)
        # The console's own forms, and links such as "Deactivate…" (a confirmation page).
        console = [u for u in actions + links if re.match(r"/shop/admin/.+/.+", u)]
        assert len(console) >= 2, (path, actions, links)
    switched = client.post("/admin/system/sales/faults", headers=shop, data={
        "fault-sales-kind": "error", "fault-sales-target": "route", "fault-sales-route": "/x",
        "fault-sales-rate": "1"})  # fmt: skip
    assert switched.headers["Location"] == "/shop/admin/system#faults-sales"


def test_the_fault_forms_offer_every_target_the_services_accept(app: Flask) -> None:
    with app.test_request_context():
        sales = {value for value, _ in fault_form("sales").target.choices}
        inventory = {value for value, _ in fault_form("inventory").target.choices}
    assert {f"after_step:{step}" for step in SAGA_STEPS} <= sales  # "record" included
    assert "after_step:record" in sales and "after_step:record" not in inventory
    for targets in (sales, inventory):
        assert {f"after_step:{point}" for point in faults.EVENT_CRASH_POINTS} <= targets
        assert {f"broker:{op}" for op in faults.BROKER_OPERATIONS} | {"broker"} <= targets
