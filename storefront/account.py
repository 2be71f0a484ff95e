"""Register, log in, log out and the profile."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm

from storefront.clients import ApiProblem
from storefront.forms import ActionForm, LoginForm, PasswordForm, ProfileForm, RegisterForm
from storefront.problems import describe
from storefront.session import api, current_user, log_out, login_required, remember, token

bp = Blueprint("account", __name__)

PROFILE_FIELDS = ("full_name", "email", "age", "address", "gender", "marital_status")


def _safe_next(target: str | None) -> str:
    """Only a path of the storefront to go back to after logging in.

    Never another host, nor (under the gateway's /shop/ prefix) a path outside the prefix.
    """
    if not target:
        return url_for("shop.catalogue")
    parts = urlsplit(target)
    root = request.script_root + "/"
    if parts.scheme or parts.netloc or not target.startswith(root) or target.startswith("//"):
        return url_for("shop.catalogue")
    return target


@bp.route("/register", methods=["GET", "POST"])
def register() -> ResponseReturnValue:
    """A new account; logs the new customer in."""
    form = RegisterForm()
    problem = None
    if form.validate_on_submit():
        fields = {name: form[name].data for name in ("username", "password", *PROFILE_FIELDS)}
        try:
            api().register(fields)
            user = remember(api().login(str(form.username.data), str(form.password.data)))
        except ApiProblem as exc:
            problem = _refusal(form, exc)
        else:
            flash(f"Welcome, {user.username}! Top up your wallet to start shopping.", "success")
            return redirect(url_for("shop.wallet"))
    elif request.method == "POST":
        problem = "Please correct the fields marked below."
    status = 422 if problem else 200
    return render_template("account/register.html", form=form, problem=problem), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in; the tokens go into the session cookie only."""
    form = LoginForm()
    problem = None
    if form.validate_on_submit():
        try:
            user = remember(api().login(str(form.username.data), str(form.password.data)))
        except ApiProblem as exc:
            problem = describe(exc)
        else:
            flash(f"Logged in as {user.username}.", "success")
            default = url_for("admin.index") if user.is_admin else None
            return redirect(_safe_next(request.args.get("next") or default))
    elif request.method == "POST":
        problem = "Enter your username and password."
    status = 401 if problem else 200
    return render_template("account/login.html", form=form, problem=problem), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out (a POST with a CSRF token, so no other site can log anyone out): the
    session ends here and at the customers service (its refresh token is revoked)."""
    log_out()
    flash("You are logged out.", "success")
    return redirect(url_for("shop.catalogue"))


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> ResponseReturnValue:
    """See and edit the profile."""
    user = current_user()
    assert user is not None
    form = ProfileForm()
    problem = None
    if form.validate_on_submit():
        fields = {name: form[name].data for name in PROFILE_FIELDS}
        try:
            api().update_profile(token(), user.username, fields)
        except ApiProblem as exc:
            problem = _refusal(form, exc)
        else:
            flash("Your profile is saved.", "success")
            return redirect(url_for("account.profile"))
    elif request.method == "POST":
        problem = "Please correct the fields marked below."
    data = api().profile(token(), user.username)
    if request.method == "GET":
        form = ProfileForm(data=data)
    return render_template(
        "account/profile.html",
        form=form,
        password_form=PasswordForm(formdata=None),
        profile=data,
        problem=problem,
        logout_form=ActionForm(),
    ), 422 if problem else 200


@bp.post("/profile/password")
@login_required
def change_password() -> ResponseReturnValue:
    """Change the password (``POST /customers/{username}/password``); the service then
    revokes every session of the account, so this one logs in again with the new one."""
    user = current_user()
    assert user is not None
    form = PasswordForm()
    problem = None
    if form.validate():
        new = str(form.new_password.data)
        try:
            api().change_password(token(), user.username, str(form.current_password.data), new)
        except ApiProblem as exc:
            if exc.code == "invalid_credentials":
                form.current_password.errors = ["This is not your current password."]
                problem = "The password was not changed."
            else:
                problem = _refusal(form, exc)
        else:
            remember(api().login(user.username, new))
            flash("Your password is changed; other sessions of your account have ended.", "success")
            return redirect(url_for("account.profile"))
    else:
        problem = "The password was not changed: see below."
    data = api().profile(token(), user.username)
    return render_template(
        "account/profile.html",
        form=ProfileForm(data=data),
        password_form=form,
        profile=data,
        problem=problem,
        logout_form=ActionForm(),
    ), 422


def _refusal(form: FlaskForm, exc: ApiProblem) -> str:
    """Show a service's refusal: its per-field messages next to the fields, in words, and
    a line above the form (a taken username goes next to the username)."""
    errors = dict(exc.field_errors)
    if exc.code == "already_exists" and "username" in form:
        errors["username"] = ["This username is taken; choose another."]
    placed = False
    for name, messages in errors.items():
        if name in form and name != "csrf_token":
            texts = messages if isinstance(messages, list) else [messages]
            form[name].errors = [*form[name].errors, *(str(t) for t in texts)]
            placed = True
    return "Please correct the fields marked below." if placed else describe(exc)
