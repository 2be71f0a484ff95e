"""The operations console (admins only): moderation, products, customers, orders, system,
events, audit and data."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from shopkit.service_client import DependencyUnavailable
from storefront import images
from storefront.clients import SERVICES, ApiProblem
from storefront.events import collect as collect_events
from storefront.faults import (
    FaultInputError,
    describe_fault,
    fault_form,
    fault_from_form,
    fingerprint,
    without,
)
from storefront.forms import (
    CATEGORIES,
    IMAGE_MAX_BYTES,
    SORTS,
    ActionForm,
    ConfirmForm,
    ImageForm,
    KeyedForm,
    ModerationForm,
    PopulateForm,
    ProductForm,
    QuantityForm,
    RemoveFaultForm,
    ReplayForm,
    ShipForm,
)
from storefront.jobs import JobBusy, JobRunner
from storefront.session import admin_required, api, attempt, page_number, token
from storefront.shop import CATALOGUE_FILTERS, ORDER_STATUSES, trace_search_url
from storefront.system import RateTracker, collect

bp = Blueprint("admin", __name__, url_prefix="/admin")
REVIEW_STATUSES = ("pending", "flagged", "approved", "rejected")
bp.add_app_template_filter(describe_fault, "fault")
bp.add_app_template_filter(fingerprint, "fingerprint")
#: Whatever app has the console serves product images too (the console uploads them,
#: the shop's pages show them): see :mod:`storefront.images`.
bp.record_once(lambda state: state.app.register_blueprint(images.bp))


@bp.before_request
@admin_required
def _only_admins() -> None:
    """Every console page refuses non-admins (and sends visitors to log in)."""


def _jobs() -> JobRunner:
    return current_app.extensions["shop_jobs"]  # type: ignore[no-any-return]


@bp.get("/")
def index() -> ResponseReturnValue:
    """The console's front page: what waits for an admin."""
    queue = api().review_queue(token(), "pending")
    pending_orders = api().orders(token(), status="pending").total
    to_ship = api().orders(token(), status="completed").total
    return render_template(
        "admin/index.html", queue=queue.total, pending_orders=pending_orders, to_ship=to_ship
    )


# --- moderation -------------------------------------------------------------------------------


@bp.get("/moderation")
def moderation() -> ResponseReturnValue:
    """The moderation queue (pending by default, oldest first)."""
    status = request.args.get("status", "pending")
    if status not in REVIEW_STATUSES:
        status = "pending"
    page = api().review_queue(token(), status, page_number())
    return render_template(
        "admin/moderation.html",
        page=page,
        names=product_names({int(r["product_id"]) for r in page.items}),
        status=status,
        statuses=REVIEW_STATUSES,
        form=ModerationForm(formdata=None),
    )


def product_names(product_ids: set[int]) -> dict[int, str]:
    """Names of the products (one ``GET /products?ids=`` call); archived ones are absent.

    The page still works without them (it shows the id): a name is a label, not the point.
    """
    if not product_ids:
        return {}
    ids = ",".join(str(i) for i in sorted(product_ids))
    try:
        found = api().products({"ids": ids}, page_size=len(product_ids)).items
    except (ApiProblem, DependencyUnavailable):
        return {}
    return {int(p["id"]): str(p["name"]) for p in found}


@bp.post("/reviews/<int:review_id>/moderation")
def moderate(review_id: int) -> ResponseReturnValue:
    """Approve, flag or reject a review, with a note."""
    form = ModerationForm()
    if form.validate():
        action, note = str(form.action.data), form.note.data or ""
        attempt(lambda: api().moderate(token(), review_id, action, note),
                f"Review {review_id}: {action} done.")  # fmt: skip
    else:
        flash("Choose approve, flag or reject.", "error")
    return redirect(url_for("admin.moderation", status=request.args.get("status", "pending")))


# --- products ---------------------------------------------------------------------------------


@bp.get("/products")
def products() -> ResponseReturnValue:
    """Products with the catalogue's filters, to edit, restock and archive."""
    filters = {name: request.args.get(name, "").strip() for name in CATALOGUE_FILTERS}
    problem, page = None, None
    try:
        page = api().products(filters, page=page_number(), page_size=25)
    except ApiProblem as exc:
        problem = exc.message()
    return render_template(
        "admin/products.html",
        page=page,
        problem=problem,
        filters=filters,
        categories=CATEGORIES,
        sorts=SORTS,
    )


@bp.route("/products/new", methods=["GET", "POST"])
def new_product() -> ResponseReturnValue:
    """Create a product."""
    form = ProductForm()
    problem = None
    if form.validate_on_submit():
        try:
            created = api().create_product(token(), _product_fields(form, with_stock=True))
        except ApiProblem as exc:
            problem = exc.message()
        else:
            flash(f"Product {created['id']} created.", "success")
            return redirect(url_for("admin.product", product_id=created["id"]))
    elif request.method == "POST":
        problem = "Please correct the fields marked below."
    return render_template(
        "admin/product_form.html", form=form, product=None, problem=problem
    ), 422 if problem else 200


def product_form_data(item: dict[str, Any]) -> dict[str, Any]:
    """The product as the form's fields hold it: the API's money string as a ``Decimal``.

    The API sends ``price`` as a decimal string (``"12.50"``, see docs/architecture.rst);
    WTForms' ``DecimalField`` formats its data as a number, so a string would fail there.
    """
    data = {name: item.get(name) for name in ("name", "category", "description")}
    try:
        data["price"] = Decimal(str(item.get("price")))
    except InvalidOperation:
        data["price"] = None  # shown empty: the form asks for a price again
    return data


def _product_fields(form: ProductForm, *, with_stock: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": form.name.data,
        "category": form.category.data,
        "price": f"{form.price.data:.2f}",
        "description": form.description.data or "",
    }
    if with_stock:
        fields["stock"] = int(form.stock.data or 0)
    return fields


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
def product(product_id: int) -> ResponseReturnValue:
    """Edit a product; restock, archive or restore it."""
    item = api().product(product_id, token())
    form = ProductForm() if request.method == "POST" else ProductForm(data=product_form_data(item))
    problem = None
    if request.method == "POST":
        if form.validate():
            try:
                api().update_product(token(), product_id, _product_fields(form, with_stock=False))
            except ApiProblem as exc:
                problem = exc.message()
            else:
                flash("Product saved.", "success")
                return redirect(url_for("admin.product", product_id=product_id))
        else:
            problem = "Please correct the fields marked below."
    return render_template(
        "admin/product_form.html",
        form=form,
        product=item,
        problem=problem,
        restock_form=QuantityForm(formdata=None),
        action_form=ActionForm(),
        image_form=ImageForm(formdata=None),
    ), 422 if problem else 200


@bp.url_value_preprocessor
def _bound_uploads(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """An image upload's body may be at most twice the image limit (werkzeug answers 413).

    Set here because URL value preprocessors run before every ``before_request``
    function, the input guard's too, which reads the form.
    """
    if endpoint == "admin.upload_image":
        request.max_content_length = 2 * IMAGE_MAX_BYTES


@bp.post("/products/<int:product_id>/image")
def upload_image(product_id: int) -> ResponseReturnValue:
    """Upload the product's image (``PUT /products/{id}/image``), replacing the one before."""
    form = ImageForm()
    if form.validate():
        upload = form.image.data
        content = upload.read()
        attempt(lambda: api().upload_image(token(), product_id, content, upload.mimetype),
                "Image uploaded.")  # fmt: skip
    else:
        flash(_form_errors(form), "error")
    return redirect(url_for("admin.product", product_id=product_id))


@bp.post("/products/<int:product_id>/restock")
def restock(product_id: int) -> ResponseReturnValue:
    """Add stock."""
    form = QuantityForm()
    if form.validate():
        quantity = int(form.quantity.data or 0)
        attempt(lambda: api().restock(token(), product_id, quantity), f"Restocked {quantity}.")
    else:
        flash("A restock needs a quantity of at least 1.", "error")
    return redirect(url_for("admin.product", product_id=product_id))


@bp.post("/products/<int:product_id>/archive")
def archive(product_id: int) -> ResponseReturnValue:
    """Archive a product (it leaves the catalogue; its history stays)."""
    attempt(lambda: api().archive(token(), product_id), "Product archived.")
    return redirect(url_for("admin.product", product_id=product_id))


@bp.post("/products/<int:product_id>/restore")
def restore(product_id: int) -> ResponseReturnValue:
    """Bring an archived product back."""
    attempt(
        lambda: api().update_product(token(), product_id, {"archived": False}), "Product restored."
    )
    return redirect(url_for("admin.product", product_id=product_id))


# --- customers --------------------------------------------------------------------------------


@bp.get("/customers")
def customers() -> ResponseReturnValue:
    """Search customers, active, deactivated or all; deactivate or reactivate an account."""
    q = request.args.get("q", "").strip()
    active_arg = request.args.get("active", "true")
    active = {"true": True, "false": False}.get(active_arg)
    problem, page = None, None
    try:
        page = api().customers(token(), q or None, active, page_number())
    except ApiProblem as exc:
        problem = exc.message()
    return render_template(
        "admin/customers.html",
        page=page,
        q=q,
        active=active_arg,
        problem=problem,
        form=ActionForm(),
    )


@bp.route("/customers/<username>/deactivate", methods=["GET", "POST"])
def deactivate(username: str) -> ResponseReturnValue:
    """Deactivate an account (its history is kept; its tokens stop working), once confirmed.

    ``GET`` (the customers list links here) asks; only the confirmation's ``POST`` acts.
    A ``POST`` without it (an old page's button) is asked again, never acted on.
    """
    form = ConfirmForm()
    if request.method == "POST" and form.validate():
        attempt(lambda: api().deactivate(token(), username), f"{username} is deactivated.")
        return redirect(url_for("admin.customers", q=username, active="all"))
    return render_template("admin/confirm_deactivate.html", username=username,
                           form=ConfirmForm(formdata=None))  # fmt: skip


@bp.post("/customers/<username>/reactivate")
def reactivate(username: str) -> ResponseReturnValue:
    """Let a deactivated account log in again (``POST /customers/{username}/reactivation``)."""
    attempt(lambda: api().reactivate(token(), username),
            f"{username} is active again and can log in.")  # fmt: skip
    return redirect(url_for("admin.customers", q=username, active="all"))


# --- orders -----------------------------------------------------------------------------------


@bp.get("/orders")
def orders() -> ResponseReturnValue:
    """Every order, by status and buyer."""
    status = request.args.get("status") or None
    if status not in (None, *ORDER_STATUSES):
        status = None
    customer = request.args.get("customer", "").strip() or None
    page = api().orders(token(), status=status, customer=customer, page=page_number())
    return render_template(
        "admin/orders.html", page=page, status=status, customer=customer or "",
        statuses=ORDER_STATUSES,
    )  # fmt: skip


@bp.get("/orders/<uuid:sale_id>")
def order(sale_id: Any) -> ResponseReturnValue:
    """One order with its saga steps as a timeline; ship, deliver or cancel it."""
    sale = api().order(token(), str(sale_id))
    return render_template(
        "admin/order.html",
        sale=sale,
        address=delivery_address(sale),
        trace_url=trace_search_url(str(sale_id)),
        ship_form=ShipForm(formdata=None),
        action_form=ActionForm(),
        cancel_form=KeyedForm(),
    )


def delivery_address(sale: dict[str, Any]) -> str | None:
    """Where the order goes: the address the order holds, else the buyer's profile now.

    ``None`` when neither can be read (the page says so instead of failing).
    """
    if sale.get("address"):
        return str(sale["address"])
    try:
        return str(api().profile(token(), str(sale.get("username") or "")).get("address") or "")
    except (ApiProblem, DependencyUnavailable):
        return None


@bp.post("/orders/<uuid:sale_id>/ship")
def ship(sale_id: Any) -> ResponseReturnValue:
    """Mark the order shipped (carrier and tracking number optional)."""
    form = ShipForm()
    form.validate()
    carrier, tracking = form.carrier.data or "", form.tracking_number.data or ""
    attempt(lambda: api().ship(token(), str(sale_id), carrier, tracking), "Order shipped.")
    return redirect(url_for("admin.order", sale_id=sale_id))


@bp.post("/orders/<uuid:sale_id>/deliver")
def deliver(sale_id: Any) -> ResponseReturnValue:
    """Mark the order delivered."""
    attempt(lambda: api().deliver(token(), str(sale_id)), "Order delivered.")
    return redirect(url_for("admin.order", sale_id=sale_id))


@bp.post("/orders/<uuid:sale_id>/cancel")
def cancel(sale_id: Any) -> ResponseReturnValue:
    """Cancel the order for the buyer: the refund saga."""
    form = KeyedForm()
    if not form.validate():
        flash("The form expired; please try again.", "error")
    else:
        key = str(form.key.data)
        attempt(lambda: api().cancel(token(), str(sale_id), key),
                "Order cancelled; the buyer is refunded.", "cancel")  # fmt: skip
    return redirect(url_for("admin.order", sale_id=sale_id))


# --- system, audit and data -------------------------------------------------------------------


@bp.get("/system")
def system() -> ResponseReturnValue:
    """Readiness, traffic, sales by outcome, pending sales, recoveries and fault switches."""
    tracker: RateTracker = current_app.extensions["shop_rates"]
    view = collect(api(), token(), tracker)
    if request.headers.get("HX-Request"):
        return render_template("admin/_system.html", view=view)
    return render_template(
        "admin/system.html",
        view=view,
        form=ActionForm(),
        fault_forms={s.name: fault_form(s.name) for s in view.services if s.faults_available},
    )


def _to_faults(service: str) -> ResponseReturnValue:
    return redirect(url_for("admin.system", _anchor=f"faults-{service}"))


@bp.post("/system/<service>/faults")
def switch_fault_on(service: str) -> ResponseReturnValue:
    """Add one fault to the service's set (``GET`` the set, ``PUT`` it back with the new one)."""
    if service not in SERVICES:
        abort(404)
    form = fault_form(service, submitted=True)
    if not form.validate():
        flash(_form_errors(form), "error")
        return _to_faults(service)
    try:
        fault = fault_from_form(form)
    except FaultInputError as exc:
        flash(str(exc), "error")
        return _to_faults(service)

    def add() -> None:
        current = api().faults(token(), service)
        if current is None:
            raise ApiProblem(service, 404, {"detail": f"{service} has no /admin/faults."})
        api().set_faults(token(), service, [*current.get("faults", []), fault])

    attempt(add, f"{service}: switched on {describe_fault(fault)}.")
    return _to_faults(service)


@bp.post("/system/<service>/faults/off")
def switch_fault_off(service: str) -> ResponseReturnValue:
    """Switch one fault off: ``PUT`` the set back without it."""
    if service not in SERVICES:
        abort(404)
    form = RemoveFaultForm()
    if not form.validate():
        flash("Choose a fault to switch off.", "error")
        return _to_faults(service)
    shown = str(form.fault.data)
    try:
        fault = json.loads(shown)
    except ValueError:
        fault = None
    if not isinstance(fault, dict):
        flash("Choose a fault to switch off.", "error")
        return _to_faults(service)

    def remove() -> None:
        current = api().faults(token(), service) or {}
        rest = without(list(current.get("faults") or []), shown)
        if rest is None:
            raise ApiProblem(service, 409, {"detail": "That fault is no longer switched on."})
        api().set_faults(token(), service, rest)

    attempt(remove, f"{service}: switched off {describe_fault(fault)}.")
    return _to_faults(service)


@bp.post("/system/<service>/faults/clear")
def clear_faults(service: str) -> ResponseReturnValue:
    """Switch off every live fault of a service."""
    if service not in SERVICES:
        flash("Unknown service.", "error")
    else:
        attempt(lambda: api().clear_faults(token(), service), f"Faults of {service} switched off.")
    return _to_faults(service)


@bp.get("/events")
def events() -> ResponseReturnValue:
    """Each stream's length, each group's lag and pending entries, each outbox's backlog, and
    the dead letters to replay or discard."""
    return render_template(
        "admin/events.html", page=collect_events(api(), token()), form=ActionForm()
    )


@bp.post("/events/<service>/<group>/dead-letters/<dead_id>/<action>")
def dead_letter(service: str, group: str, dead_id: str, action: str) -> ResponseReturnValue:
    """Replay a dead letter to its group, or discard it (the service's ``/admin/events``)."""
    if service not in SERVICES or action not in ("replay", "discard"):
        abort(404)
    form = ActionForm()
    if not form.validate():
        flash("The form expired; please try again.", "error")
    else:
        done = "replayed to its group" if action == "replay" else "discarded"
        attempt(lambda: api().dead_letter_action(token(), service, group, dead_id, action),
                f"Dead letter {dead_id} of {service}/{group} {done}.")  # fmt: skip
    return redirect(url_for("admin.events"))


@bp.route("/audit", methods=["GET", "POST"])
def audit() -> ResponseReturnValue:
    """Run ``seeder audit`` (the cross-service invariants) and show what it found."""
    form = ActionForm()
    if request.method == "POST" and form.validate():
        _start("audit", [])
        return redirect(url_for("admin.audit"))
    job = _jobs().current
    return render_template("admin/audit.html", job=job if job and job.kind == "audit" else None,
                           form=form)  # fmt: skip


@bp.get("/data")
def data() -> ResponseReturnValue:
    """Start ``populate`` or ``replay`` and watch it run."""
    return render_template(
        "admin/data.html",
        job=_jobs().current,
        populate_form=PopulateForm(formdata=None),
        replay_form=ReplayForm(formdata=None),
        stop_form=ActionForm(),
    )


@bp.get("/data/progress")
def progress() -> ResponseReturnValue:
    """The current run's progress (the fragment the data and audit pages poll)."""
    return render_template("admin/_job.html", job=_jobs().current, stop_form=ActionForm())


@bp.post("/data/populate")
def populate() -> ResponseReturnValue:
    """``python -m seeder populate --customers N --products M --seed S``."""
    form = PopulateForm()
    if form.validate():
        _start(
            "populate",
            ["--customers", str(form.customers.data), "--products", str(form.products.data),
             "--seed", str(form.seed.data)],
        )  # fmt: skip
    else:
        flash(_form_errors(form), "error")
    return redirect(url_for("admin.data"))


@bp.post("/data/replay")
def replay() -> ResponseReturnValue:
    """``python -m seeder replay --purchases N --concurrency C --rate R --seed S``."""
    form = ReplayForm()
    if form.validate():
        _start(
            "replay",
            ["--purchases", str(form.purchases.data), "--concurrency", str(form.concurrency.data),
             "--rate", f"{form.rate.data:g}", "--seed", str(form.seed.data),
             "--report-every", "1"],
            target=int(form.purchases.data or 0),
        )  # fmt: skip
    else:
        flash(_form_errors(form), "error")
    return redirect(url_for("admin.data"))


@bp.post("/data/stop")
def stop() -> ResponseReturnValue:
    """Stop the current run (a replay prints its summary first)."""
    _jobs().stop()
    flash("Asked the run to stop.", "success")
    return redirect(url_for("admin.data"))


def _start(kind: str, args: list[str], target: int | None = None) -> None:
    try:
        _jobs().start(kind, args, target)
    except JobBusy as exc:
        flash(f"Another run is still going ({exc}); wait for it or stop it.", "error")
    else:
        flash(f"Started {kind}.", "success")


def _form_errors(form: Any) -> str:
    return " ".join(
        f"{form[name].label.text}: {'; '.join(errors)}" for name, errors in form.errors.items()
    )
