"""Shopper pages: catalogue, product, cart and checkout, orders, wallet and reviews.

Each view reads the request, makes the calls through :func:`storefront.session.api`
and renders a template; a service's refusal is shown with its own ``detail``.
Everything works with plain forms and links (no JavaScript needed); htmx
only makes some forms update in place.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from shopkit.service_client import DependencyUnavailable
from shopkit.telemetry import tracing_requested
from storefront import checkout
from storefront.clients import ApiProblem, Page
from storefront.forms import (
    CATEGORIES,
    MAX_TOP_UP,
    SHOP_SORTS,
    ActionForm,
    KeyedForm,
    QuantityForm,
    ReviewForm,
    TopUpForm,
    new_key,
)
from storefront.money import Money
from storefront.problems import describe
from storefront.session import (
    api,
    attempt,
    current_user,
    login_required,
    page_number,
    past_the_end,
    token,
)

bp = Blueprint("shop", __name__)
#: The session's count of units in the cart, shown in the menu.
CART_COUNT = "cart_count"

#: The catalogue's query parameters, passed to ``GET /products`` as they are.
CATALOGUE_FILTERS = ("q", "category", "min_price", "max_price", "in_stock", "sort")
ORDER_STATUSES = ("pending", "completed", "failed", "shipped", "delivered", "cancelling",
                  "cancelled")  # fmt: skip


def _username() -> str:
    user = current_user()
    assert user is not None  # every caller is behind login_required
    return user.username


@bp.get("/")
def catalogue() -> ResponseReturnValue:
    """The catalogue: text search, category, price range, in stock, sort, pages."""
    filters = {name: request.args.get(name, "").strip() for name in CATALOGUE_FILTERS}
    page = None
    problem = None
    try:
        page = api().products(filters, page=page_number())
    except ApiProblem as exc:
        problem = exc.message()
        if exc.status == 422 and filters["sort"] == "rating":
            # An inventory that does not sort by rating yet: the default order, said so.
            page, problem = _unsorted(filters)
    if page is not None and (last := past_the_end(page)) is not None:
        return redirect(url_for("shop.catalogue", **{**_set(filters), "page": last}))
    return render_template(
        "shop/catalogue.html",
        page=page,
        problem=problem,
        filters=filters,
        categories=CATEGORIES,
        sorts=SHOP_SORTS,
        add_form=QuantityForm(),
    )


def _unsorted(filters: dict[str, str]) -> tuple[Page | None, str | None]:
    """The catalogue page in the default order, and why (or the inventory's refusal)."""
    try:
        page = api().products({**filters, "sort": ""}, page=page_number())
    except ApiProblem as exc:
        return None, exc.message()
    return page, "Sorting by rating is not available yet: here are the newest first."


@bp.get("/products/<int:product_id>")
def product(product_id: int) -> ResponseReturnValue:
    """One product: stock, approved reviews with average and histogram, add to cart, review."""
    return _render_product(product_id)


def _render_product(
    product_id: int,
    review_form: ReviewForm | None = None,
    problem: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The product page; ``review_form`` keeps what the shopper wrote when it was refused."""
    item = api().product(product_id)
    reviews = api().product_reviews(product_id, page=page_number())
    mine = None
    bought = False
    user = current_user()
    if user is not None and not user.is_admin:
        own = api().reviews_of(token(), user.username).items
        mine = next((r for r in own if r.get("product_id") == product_id), None)
        bought = mine is not None or _bought(user.username, product_id)
    if review_form is None:
        review_form = ReviewForm()
        if mine is not None:
            review_form.rating.data = str(mine.get("rating"))
            review_form.comment.data = mine.get("comment") or ""
    summary = reviews.get("summary") or {}
    histogram = {str(n): int((summary.get("histogram") or {}).get(str(n), 0)) for n in range(1, 6)}
    return render_template(
        "shop/product.html",
        product=item,
        reviews=reviews.get("items") or [],
        summary=summary,
        histogram=histogram,
        mine=mine,
        bought=bought,
        problem=problem,
        add_form=QuantityForm(),
        review_form=review_form,
        delete_form=ActionForm(),
    ), status


#: The statuses of an order that was paid for (what entitles a review).
PAID = frozenset({"completed", "shipped", "delivered"})


def _bought(username: str, product_id: int) -> bool:
    """Whether the shopper has a paid order of the product (the reviews service decides
    again); ``False`` when sales does not answer."""
    try:
        orders = api().orders_of(token(), username, product=product_id, page_size=100)
    except (ApiProblem, DependencyUnavailable):
        return False
    return any(order.get("status") in PAID for order in orders.items)


# --- cart and checkout ------------------------------------------------------------------------


def _render_cart(
    problem: str | None = None, status: int = 200, recorded: str | None = None
) -> ResponseReturnValue:
    """The cart page; ``recorded`` names an order the last checkout recorded (still pending)."""
    cart = api().cart(token())
    _count_cart(cart)
    short = [
        int(line["product_id"])
        for line in cart.get("items") or []
        if not line.get("available") and line.get("unit_price") is not None
    ]
    stock = {pid: int(p.get("stock") or 0) for pid, p in _products(short).items()}
    return (
        render_template(
            "shop/cart.html",
            cart=cart,
            stock=stock,
            problem=problem,
            pending=recorded or _pending_order(),
            line_form=QuantityForm(),
            remove_form=ActionForm(),
            checkout_form=KeyedForm(formdata=None, key=checkout.key_for(_username(), cart)),
        ),
        status,
    )


def _count_cart(cart: dict[str, Any]) -> None:
    """Remember how many units the cart holds, for the menu (as of the last cart seen)."""
    session[CART_COUNT] = sum(int(line.get("quantity") or 0) for line in cart.get("items") or [])


def _pending_order() -> str | None:
    """The id of the shopper's newest order still ``pending`` (its lines stay in the cart
    until it completes), or ``None``; a sales service that does not answer hides it."""
    try:
        page = api().orders_of(token(), _username(), "pending")
    except (ApiProblem, DependencyUnavailable):
        return None
    return str(page.items[0]["id"]) if page.items else None


@bp.get("/cart")
@login_required
def cart() -> ResponseReturnValue:
    """The cart: lines with availability, quantities to edit, the total, checkout."""
    return _render_cart()


@bp.post("/cart/items/<int:product_id>")
@login_required
def add_to_cart(product_id: int) -> ResponseReturnValue:
    """Add a quantity of a product to the cart (on top of what is there)."""
    form = QuantityForm()
    if not form.validate():
        flash("Choose a quantity of at least 1.", "error")
        return redirect(url_for("shop.product", product_id=product_id))
    current = api().cart(token())
    have = next(
        (int(i["quantity"]) for i in current.get("items", []) if i["product_id"] == product_id), 0
    )
    try:
        updated = api().set_cart_item(token(), product_id, have + int(form.quantity.data or 1))
    except ApiProblem as exc:
        flash(describe(exc), "error")
        return redirect(url_for("shop.product", product_id=product_id))
    _count_cart(updated)
    flash("Added to your cart.", "success")
    return redirect(url_for("shop.cart"))


@bp.post("/cart/items/<int:product_id>/quantity")
@login_required
def set_quantity(product_id: int) -> ResponseReturnValue:
    """Change a line's quantity."""
    form = QuantityForm()
    if not form.validate():
        return _render_cart("A quantity must be a whole number of at least 1.", 422)
    try:
        api().set_cart_item(token(), product_id, int(form.quantity.data or 1))
    except ApiProblem as exc:
        return _render_cart(describe(exc), _refusal_status(exc))
    return redirect(url_for("shop.cart"))


@bp.post("/cart/items/<int:product_id>/remove")
@login_required
def remove_from_cart(product_id: int) -> ResponseReturnValue:
    """Remove a line."""
    api().remove_cart_item(token(), product_id)
    flash("Removed from your cart.", "success")
    return redirect(url_for("shop.cart"))


@bp.post("/cart/checkout")
@login_required
def checkout_cart() -> ResponseReturnValue:
    """Place the cart as one order; a refusal keeps the cart and says why.

    An order that is recorded but not settled yet is shown as such, never as
    "try again": checking out again sends the same key (:mod:`storefront.checkout`)
    and sales answers with that same order.
    """
    form = KeyedForm()
    if not form.validate():
        return _render_cart("The form expired; please try again.", 400)
    try:
        order = api().checkout(token(), str(form.key.data))
    except DependencyUnavailable:
        return _render_cart(checkout.NO_ANSWER, 503)
    except ApiProblem as exc:
        if checkout.settled(exc):
            checkout.rotate()
        sale_id = checkout.recorded_sale(exc)
        if sale_id is not None:
            return _render_cart(status=202, recorded=sale_id)
        return _render_cart(_checkout_message(exc), _refusal_status(exc))
    if order.get("status") == "pending":  # recorded; a checkout answers with it (202)
        return _render_cart(status=202, recorded=str(order["id"]))
    checkout.rotate()
    session.pop(CART_COUNT, None)  # its lines left the cart (unless changed meanwhile)
    flash("Thank you: your order is paid.", "success")
    return redirect(url_for("shop.order", sale_id=order["id"]))


def _refusal_status(exc: ApiProblem) -> int:
    """The page's status for a refused form: the service's 409 or 503, else 422 (5xx: 502)."""
    if exc.status in (409, 503):
        return exc.status
    return 422 if exc.status < 500 else 502


def _checkout_message(exc: ApiProblem) -> str:
    """The problem's detail, plus what to do about it."""
    hints = {
        "insufficient_funds": "Top up your wallet, then check out again: your cart is kept.",
        "insufficient_stock": "Lower the quantities marked short, then check out again.",
    }
    return describe(exc, "order", hints)


# --- orders -----------------------------------------------------------------------------------


@bp.get("/orders")
@login_required
def orders() -> ResponseReturnValue:
    """The user's orders, newest first, filtered by status."""
    status = request.args.get("status") or None
    if status not in (None, *ORDER_STATUSES):
        status = None
    page = api().orders_of(token(), _username(), status, page_number())
    if (last := past_the_end(page)) is not None:
        return redirect(url_for("shop.orders", **_set({"status": status, "page": last})))
    unnamed = [
        int(line["product_id"])
        for order in page.items
        for line in order.get("items") or []
        if not line.get("product_name")
    ]
    return render_template(
        "shop/_orders_table.html" if _fragment() else "shop/orders.html",
        page=page,
        status=status,
        statuses=ORDER_STATUSES,
        names=_product_names(unnamed),
        rendered_ms=_now_ms(),
    )


def _fragment() -> bool:
    """Whether the page's live part alone is asked for (``?fragment=1``: the page's script
    reloads it when an order changes, :mod:`storefront.live`)."""
    return request.args.get("fragment") == "1"


def _now_ms() -> int:
    """Now, in milliseconds since the epoch: when the page was drawn (its live stream
    replays what happened since)."""
    return int(time.time() * 1000)


def _product_names(product_ids: list[int]) -> dict[int, str]:
    """Names of products an answer named by id only; ``{}`` when inventory does not answer
    (the pages then say "product 7")."""
    found = _products(product_ids)
    return {product_id: str(product["name"]) for product_id, product in found.items()}


def _products(product_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The listed products among ``product_ids``; ``{}`` when inventory does not answer."""
    if not product_ids:
        return {}
    try:
        return api().products_by_id(product_ids)
    except (ApiProblem, DependencyUnavailable):
        return {}


@bp.get("/orders/<uuid:sale_id>")
@login_required
def order(sale_id: Any) -> ResponseReturnValue:
    """One order: lines, status history, tracking, and cancel while allowed."""
    sale = api().order(token(), str(sale_id))
    if _fragment():
        return render_template(
            "shop/_order_detail.html", sale=sale, shopper=True, cancel_form=KeyedForm()
        )
    return render_template(
        "shop/order.html",
        sale=sale,
        shopper=True,
        address=_delivery_address(),
        trace_url=trace_search_url(str(sale_id)),
        cancel_form=KeyedForm(),
        rendered_ms=_now_ms(),
    )


def _delivery_address() -> str | None:
    """The shopper's address from the profile (``None`` if customers does not answer)."""
    try:
        return api().profile(token(), _username()).get("address")
    except (ApiProblem, DependencyUnavailable):
        return None


def trace_search_url(sale_id: str) -> str | None:
    """Jaeger's search for the order's saga spans (tagged ``shop.sale_id``), while tracing is
    on and ``JAEGER_UI_URL`` names Jaeger's UI; else ``None``."""
    base = os.environ.get("JAEGER_UI_URL", "").strip().rstrip("/")
    if not base or not tracing_requested():
        return None
    tags = json.dumps({"shop.sale_id": sale_id})
    return f"{base}/search?{urlencode({'service': 'sales', 'tags': tags})}"


@bp.post("/orders/<uuid:sale_id>/cancel")
@login_required
def cancel_order(sale_id: Any) -> ResponseReturnValue:
    """Cancel an order: the refund saga in sales."""
    form = KeyedForm()
    if not form.validate():
        flash("The form expired; please try again.", "error")
        return redirect(url_for("shop.order", sale_id=sale_id))
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm that you want to cancel this order.", "error")
        return redirect(url_for("shop.order", sale_id=sale_id))
    key = str(form.key.data)
    attempt(lambda: api().cancel(token(), str(sale_id), key),
            "Your order is cancelled and the money is back in your wallet.", "cancel")  # fmt: skip
    return redirect(url_for("shop.order", sale_id=sale_id))


# --- wallet -----------------------------------------------------------------------------------


@bp.route("/wallet", methods=["GET", "POST"])
@login_required
def wallet() -> ResponseReturnValue:
    """The wallet: balance, top-up (its limit stated) and the ledger."""
    form = TopUpForm()
    problem, status = None, 200
    if request.method == "POST":
        status = 422
        if form.validate():
            amount = f"{form.amount.data:.2f}"
            try:
                api().top_up(token(), _username(), amount, str(form.key.data))
            except ApiProblem as exc:
                problem, status = describe(exc), _refusal_status(exc)
            else:
                flash(f"Added {money().format(amount)} to your wallet.", "success")
                return redirect(url_for("shop.wallet"))
        else:
            problem = " ".join(form.amount.errors) or "Enter an amount."
    data = api().wallet(token(), _username(), page=page_number())
    ledger = Page.of(data)
    if (last := past_the_end(ledger)) is not None:
        return redirect(url_for("shop.wallet", page=last))
    fresh = TopUpForm(formdata=None, key=new_key())
    fresh.amount.raw_data = form.amount.raw_data  # what was typed stays in the box
    return render_template(
        "shop/wallet.html",
        wallet=data,
        ledger=ledger,
        form=fresh,
        problem=problem,
        max_top_up=MAX_TOP_UP,
    ), status if problem else 200


def money() -> Money:
    """The shop's currency and how it is written."""
    return current_app.extensions["shop_money"]  # type: ignore[no-any-return]


def _set(args: dict[str, Any]) -> dict[str, Any]:
    """Only the query arguments that have a value."""
    return {name: value for name, value in args.items() if value not in (None, "")}


# --- reviews ----------------------------------------------------------------------------------


@bp.post("/products/<int:product_id>/review")
@login_required
def review(product_id: int) -> ResponseReturnValue:
    """Write (or edit) the user's review of a product; it waits for moderation. A refusal
    shows the product page again with what was written."""
    form = ReviewForm()
    if not form.validate():
        problem = "Choose a rating from 1 to 5 and keep the comment under 2000 characters."
        return _render_product(product_id, form, problem, 422)
    rating, comment = int(form.rating.data or 5), form.comment.data or ""
    own = api().reviews_of(token(), _username()).items
    mine = next((r for r in own if r.get("product_id") == product_id), None)
    try:
        if mine is None:
            api().write_review(token(), product_id, rating, comment)
        else:
            api().edit_review(token(), int(mine["id"]), rating, comment)
    except ApiProblem as exc:
        return _render_product(product_id, form, describe(exc), _refusal_status(exc))
    flash("Thanks! Your review will appear once a moderator approves it.", "success")
    return redirect(url_for("shop.product", product_id=product_id))


@bp.post("/reviews/<int:review_id>/delete")
@login_required
def delete_review(review_id: int) -> ResponseReturnValue:
    """Delete one of the user's reviews."""
    attempt(lambda: api().delete_review(token(), review_id), "Your review is deleted.")
    return redirect(url_for("shop.my_reviews"))


@bp.get("/reviews")
@login_required
def my_reviews() -> ResponseReturnValue:
    """The user's reviews in every status."""
    page = api().reviews_of(token(), _username(), page=page_number())
    if (last := past_the_end(page)) is not None:
        return redirect(url_for("shop.my_reviews", page=last))
    names = _product_names([int(r["product_id"]) for r in page.items])
    return render_template("shop/reviews.html", page=page, names=names, delete_form=ActionForm())
