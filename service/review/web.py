"""The review web app at `/review`: the queue, the item view with the taxonomy picker,
blind rating and the dashboard. Server-rendered (Jinja2, autoescaped) with one vanilla JS
file for the keyboard shortcuts, the type-ahead and the browse tree; no CDN, no framework.

| route | who | what |
|---|---|---|
| `GET/POST /review/login`, `POST /review/logout` | anyone | session cookie (security.py) |
| `GET /review/` | annotator, admin | pending items, filtered by vertical, reason, sensitive, model version; paged |
| `GET /review/items/{id}` | annotator, admin | product, prediction + candidates, merchant feedback, routing, audit trail, decision form |
| `POST /review/items/{id}/decision` | annotator, admin | approve (with a category) / reject / skip, then the next pending item |
| `GET/POST /review/rate` | annotator, admin | a blind sample of a served prediction: correct / partly / wrong |
| `GET /review/dashboard` | admin | acceptance per vertical and model version, kappa, correction and rejection rates, Wilson 95% |
| `GET/POST /review/users` | admin | the annotator accounts; add one |
| `GET /review/api/categories?q=` | annotator, admin | type-ahead over English and localized names (taxonomy_search.py) |
| `GET /review/api/categories/{id}/children` | annotator, admin | the browse tree, one level at a time (`root`: the verticals) |

Roles: everyone who reviews approves, rejects and skips (an admin's reject settles an item
at once, the store's k-of-n rule); the dashboard and the accounts are admin-only.
Not logged in: pages redirect to the login form and the JSON endpoints answer 401. Every
POST needs the session's CSRF token (403 otherwise, nothing changed).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from service.review.feedback import normalise_category_id
from service.review.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    ReviewSessions,
    SessionCodec,
    csrf_ok,
    same_origin,
    session_of,
)
from service.review.store import (
    VERDICTS,
    AnnotatorView,
    DuplicateError,
    ItemView,
    NotFoundError,
    QueueFilter,
    ReviewStateError,
    ReviewStore,
)
from service.review.taxonomy_search import CategoryIndex, index_for, short_id
from taxonomy.model import Taxonomy
from transforms.sanitise import html_to_text

__all__ = ["PREFIX", "BarChart", "bar_chart", "mount_review"]

PREFIX = "/review"
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PAGE_SIZE = 25
# How far ahead the item page looks in the queue for next/previous (j/k).
NEIGHBOUR_WINDOW = 200
# Failed logins per username before a cool-down (per process: a brake, not a lockout).
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 300.0
MAX_DESCRIPTION_CHARS = 4000


class _PageError(Exception):
    """An answer other than the page: a redirect (`location`) or an error page / JSON."""

    def __init__(self, status: int, message: str = "", *, title: str = "", location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title
        self.location = location


def mount_review(
    app: FastAPI,
    store: ReviewStore,
    taxonomy: Callable[[], Taxonomy | None],
    *,
    secret_key: str,
    cookie_secure: bool = False,
) -> None:
    """Serve the review app under `/review` on `app`. `taxonomy()` gives the loaded taxonomy
    (None while it loads); `secret_key` signs the session cookies (the same on every
    replica); `cookie_secure` marks them Secure (set it behind TLS)."""
    web = _ReviewApp(store, taxonomy)
    app.add_middleware(ReviewSessions, codec=SessionCodec(secret_key), prefix=PREFIX, secure=cookie_secure)
    app.add_exception_handler(_PageError, web.page_error)  # type: ignore[arg-type]
    app.include_router(web.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="review-static")


def _static_version() -> str:
    digest = hashlib.sha256()
    for f in sorted(STATIC.iterdir()):
        if f.is_file():
            digest.update(f.read_bytes())
    return digest.hexdigest()[:10]


def _environment() -> Environment:
    # Autoescape for every template: merchant and model text is untrusted.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    version = _static_version()
    env.globals["prefix"] = PREFIX
    env.globals["static"] = lambda name: f"{PREFIX}/static/{name}?v={version}"
    return env


# -- small view helpers ---------------------------------------------------------------------


def _age(then: datetime, now: datetime | None = None) -> str:
    seconds = max(0.0, ((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return "just now"


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _web_images(urls: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(http(s) URLs to show, other references shown as text): a `javascript:` or `data:`
    URL never reaches an attribute."""
    web, other = [], []
    for u in urls[:6]:
        (web if u.lower().startswith(("https://", "http://")) else other).append(u)
    return web, other


def _description(raw: str) -> str:
    text, _ = html_to_text(raw[:200_000])
    return text if len(text) <= MAX_DESCRIPTION_CHARS else text[:MAX_DESCRIPTION_CHARS] + " …"


@dataclass(frozen=True)
class _Filters:
    vertical: str = ""
    reason: str = ""
    sensitive: str = ""
    model_version: str = ""

    @property
    def any(self) -> bool:
        return bool(self.vertical or self.reason or self.sensitive or self.model_version)

    def store_filter(self) -> QueueFilter:
        sensitive = {"yes": True, "no": False}.get(self.sensitive)
        return QueueFilter(
            vertical=self.vertical or None,
            reason=self.reason or None,
            sensitive=sensitive,
            model_version=self.model_version or None,
        )

    def query(self, **extra: Any) -> str:
        params = {k: v for k, v in self.__dict__.items() if v} | {k: v for k, v in extra.items() if v}
        return "?" + urlencode(params) if params else ""


def _filters(
    vertical: str = Query("", max_length=128),
    reason: str = Query("", max_length=64),
    sensitive: str = Query("", pattern="^(|yes|no)$"),
    model_version: str = Query("", max_length=128),
) -> _Filters:
    return _Filters(vertical, reason, sensitive, model_version)


# -- charts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    width: float  # of the bar, px
    low_x: float
    high_x: float
    value: str  # "85.0%"
    interval: str  # "81.2–88.1%"
    n: int


@dataclass(frozen=True)
class BarChart:
    """Geometry of a horizontal bar chart with Wilson error bars; the template draws it as
    inline SVG (autoescaped: the labels are data)."""

    title: str
    width: int
    height: int
    left: int  # x of the 0% axis
    plot_width: int
    bar_height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]


def bar_chart(title: str, rates: Mapping[str, Any], *, width: int = 640, label_width: int = 200) -> BarChart:
    """`rates`: label -> stats.Rate (`value`, `low`, `high`, `trials`); labels without
    trials are left out."""
    plot = width - label_width - 150
    row, bar_h, top = 28, 16, 24
    bars = []
    for i, (label, r) in enumerate((k, v) for k, v in rates.items() if v.trials):
        y = top + i * row
        bars.append(
            Bar(
                label=label if len(label) <= 30 else label[:29] + "…",
                y=y,
                width=round((r.value or 0.0) * plot, 1),
                low_x=round(label_width + r.low * plot, 1),
                high_x=round(label_width + r.high * plot, 1),
                value=f"{100 * (r.value or 0.0):.1f}%",
                interval=f"{100 * r.low:.1f}–{100 * r.high:.1f}%",
                n=r.trials,
            )
        )
    height = top + max(1, len(bars)) * row + 8
    ticks = tuple((label_width + f * plot, f"{int(f * 100)}%") for f in (0.0, 0.25, 0.5, 0.75, 1.0))
    return BarChart(title, width, height, label_width, plot, bar_h, tuple(bars), ticks)


def _pct(r: Any) -> dict[str, Any]:
    if r.value is None:
        return {"value": "—", "interval": "no data", "n": r.trials, "k": r.successes}
    return {
        "value": f"{100 * r.value:.1f}%",
        "interval": f"{100 * r.low:.1f}–{100 * r.high:.1f}%",
        "n": r.trials,
        "k": r.successes,
    }


# -- the app ----------------------------------------------------------------------------------


class _ReviewApp:
    def __init__(self, store: ReviewStore, taxonomy: Callable[[], Taxonomy | None]) -> None:
        self.store = store
        self.taxonomy = taxonomy
        self.templates = Jinja2Templates(env=_environment())
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._warmed: Taxonomy | None = None
        self.router = self._routes()

    # -- rendering ----------------------------------------------------------------------

    def render(
        self, request: Request, name: str, user: AnnotatorView | None, status_code: int = 200, **context: Any
    ) -> Response:
        session = session_of(request)
        flash = session.pop("flash", None)
        if flash is not None:
            session.modified = True
        base = {"user": user, "csrf": session.csrf, "flash": flash, "nav": name.removesuffix(".html")}
        return self.templates.TemplateResponse(request, name, base | context, status_code=status_code)

    async def page_error(self, request: Request, exc: _PageError) -> Response:
        if exc.location is not None:
            return RedirectResponse(exc.location, status_code=303)
        if request.url.path.startswith(f"{PREFIX}/api/"):
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        titles = {400: "Bad request", 401: "Log in", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
        user = await run_in_threadpool(self.current, request)
        return self.render(
            request,
            "error.html",
            user,
            exc.status,
            status=exc.status,
            title=exc.title or titles.get(exc.status, "Error"),
            message=exc.message,
        )

    @staticmethod
    def flash(request: Request, message: str, *, error: bool = False) -> None:
        """A message for the next page (kept in the session across the redirect)."""
        session_of(request).set(flash={"text": message[:500], "error": error})

    # -- who is asking ------------------------------------------------------------------

    def current(self, request: Request) -> AnnotatorView | None:
        session = session_of(request)
        name = session.username
        if name is None:
            return None
        user = self.store.annotator(name)
        if user is None or not user.active:
            session.restart()
            return None
        return user

    def page_user(self, request: Request) -> AnnotatorView:
        user = self.current(request)
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _PageError(303, location=f"{PREFIX}/login?{urlencode({'next': target})}")
        return user

    def admin_user(self, request: Request) -> AnnotatorView:
        user = self.page_user(request)
        if user.role != "admin":
            raise _PageError(403, "This page is for admins.")
        return user

    def api_user(self, request: Request) -> AnnotatorView:
        user = self.current(request)
        if user is None:
            raise _PageError(401, "log in first")
        return user

    @staticmethod
    async def csrf(request: Request) -> None:
        """Every state-changing request: same origin and the session's CSRF token."""
        session = session_of(request)
        if not same_origin(request):
            raise _PageError(403, "The request came from another site.")
        presented: Any = request.headers.get(CSRF_HEADER)
        if presented is None:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                presented = (await request.form()).get(CSRF_FIELD)
        if not csrf_ok(session, presented if isinstance(presented, str) else None):
            raise _PageError(
                403,
                "The form expired or was not sent by this site (CSRF token missing or wrong). "
                "Reload the page and try again.",
            )

    # -- taxonomy ------------------------------------------------------------------------

    def _taxonomy(self) -> Taxonomy | None:
        return self.taxonomy()

    def warm(self) -> None:
        """Build the search index in the background once the taxonomy is there, so the
        first keystroke in the picker does not wait for it."""
        taxonomy = self._taxonomy()
        if taxonomy is None or self._warmed is taxonomy:
            return
        self._warmed = taxonomy
        threading.Thread(target=index_for, args=(taxonomy,), name="review-search-index", daemon=True).start()

    async def index(self) -> CategoryIndex:
        taxonomy = self._taxonomy()
        if taxonomy is None:
            raise _PageError(503, "the taxonomy is still loading; retry in a moment")
        # About a second for the full taxonomy, once: not on the event loop.
        return await asyncio.to_thread(index_for, taxonomy)

    def category(self, category_id: str | None) -> dict[str, str] | None:
        if not category_id:
            return None
        taxonomy = self._taxonomy()
        c = taxonomy.get(category_id) if taxonomy is not None else None
        if c is None:
            return {"id": category_id, "full_name": category_id}
        return {"id": c.id, "full_name": c.full_name}

    def _attributes(self, values: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
        taxonomy = self._taxonomy()
        out = []
        for handle, ids in values.items():
            attribute = taxonomy.attributes.get(handle) if taxonomy is not None else None
            names = []
            for vid in ids:
                v = taxonomy.value(vid) if taxonomy is not None else None
                names.append(v.name if v is not None else vid)
            out.append({"name": attribute.name if attribute is not None else handle, "values": names})
        return out

    # -- the queue's neighbours -------------------------------------------------------------

    def _pending_ids(self, filters: _Filters) -> list[int]:
        return [s.id for s in self.store.queue(filters.store_filter(), limit=NEIGHBOUR_WINDOW)]

    @staticmethod
    def _around(ids: list[int], item_id: int) -> tuple[int | None, int | None]:
        if item_id in ids:
            k = ids.index(item_id)
            return (ids[k - 1] if k > 0 else None), (ids[k + 1] if k + 1 < len(ids) else None)
        return None, (ids[0] if ids else None)

    # -- routes -----------------------------------------------------------------------------

    def _routes(self) -> APIRouter:  # noqa: C901 - one closure per route reads best
        router = APIRouter(prefix=PREFIX, include_in_schema=False)
        page_user = Depends(self.page_user)
        admin_user = Depends(self.admin_user)
        api_user = Depends(self.api_user)
        csrf = [Depends(self.csrf)]

        @router.get("/login")
        def login_form(request: Request, next: str = Query("", max_length=2000)) -> Response:
            if self.current(request) is not None:
                return RedirectResponse(_safe_next(next), status_code=303)
            return self.render(request, "login.html", None, next=_safe_next(next), username="", error=None)

        @router.post("/login", dependencies=csrf)
        def login(
            request: Request,
            username: str = Form("", max_length=64),
            password: str = Form("", max_length=1024),
            next: str = Form("", max_length=2000),
        ) -> Response:
            failures = self._failures[username]
            now = time.monotonic()
            while failures and now - failures[0] > LOGIN_WINDOW_S:
                failures.popleft()
            if len(failures) >= LOGIN_FAILURES:
                return self.render(
                    request,
                    "login.html",
                    None,
                    429,
                    next=_safe_next(next),
                    username=username,
                    error="Too many failed attempts; wait a few minutes.",
                )
            user = self.store.authenticate(username, password) if username and password else None
            if user is None:
                failures.append(now)
                return self.render(
                    request,
                    "login.html",
                    None,
                    401,
                    next=_safe_next(next),
                    username=username,
                    error="Wrong username or password.",
                )
            failures.clear()
            # A new session (and CSRF token) at login: no session fixation.
            session_of(request).restart(user=user.username)
            return RedirectResponse(_safe_next(next), status_code=303)

        @router.post("/logout", dependencies=csrf)
        def logout(request: Request) -> Response:
            session = session_of(request)
            session.clear()
            session.modified = True
            return RedirectResponse(f"{PREFIX}/login", status_code=303)

        @router.get("")
        @router.get("/")
        def queue(
            request: Request,
            filters: _Filters = Depends(_filters),
            page: int = Query(1, ge=1, le=100_000),
            user: AnnotatorView = page_user,
        ) -> Response:
            self.warm()
            f = filters.store_filter()
            total = self.store.count(f)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            page = min(page, pages)
            now = datetime.now(UTC)
            rows = [
                {
                    "id": s.id,
                    "title": s.title,
                    "action": s.action,
                    "predicted": s.predicted_category_path,
                    "corrected": s.corrected_category_path
                    or (self.category(s.corrected_category_id) or {}).get("full_name"),
                    "reasons": s.reasons,
                    "vertical": s.vertical,
                    "model_version": s.model_version,
                    "age": _age(s.created_at, now),
                    "created_at": _when(s.created_at),
                }
                for s in self.store.queue(f, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            ]
            return self.render(
                request,
                "queue.html",
                user,
                rows=rows,
                total=total,
                page=page,
                pages=pages,
                facets=self.store.facets(),
                filters=filters,
                query=filters.query(),
                page_url=lambda p: f"{PREFIX}/{filters.query(page=p) or '?page=1'}",
            )

        @router.get("/items/{item_id}")
        def item_page(
            request: Request,
            item_id: int,
            filters: _Filters = Depends(_filters),
            user: AnnotatorView = page_user,
        ) -> Response:
            self.warm()
            item = self.store.item(item_id)
            if item is None:
                raise _PageError(404, f"There is no review item {item_id}.")
            prev_id, next_id = self._around(self._pending_ids(filters), item_id)
            return self.render(request, "item.html", user, **self._item_context(item, filters, prev_id, next_id))

        @router.post("/items/{item_id}/decision", dependencies=csrf)
        def decide(
            request: Request,
            item_id: int,
            filters: _Filters = Depends(_filters),
            action: str = Form(..., pattern="^(approve|reject|skip)$"),
            category_id: str = Form("", max_length=256),
            note: str = Form("", max_length=1000),
            user: AnnotatorView = page_user,
        ) -> Response:
            chosen_id = chosen_path = None
            if action == "approve" and category_id.strip():
                taxonomy = self._taxonomy()
                if taxonomy is None:
                    raise _PageError(503, "The taxonomy is still loading; try again in a moment.")
                c = taxonomy.get(normalise_category_id(category_id))
                if c is None:
                    raise _PageError(400, f"Unknown category {category_id!r} in taxonomy {taxonomy.version}.")
                chosen_id, chosen_path = c.id, c.full_name
            ids_before = self._pending_ids(filters)
            try:
                self.store.decide(
                    item_id,
                    user.username,
                    action,  # type: ignore[arg-type]
                    category_id=chosen_id,
                    note=note.strip() or None,
                    category_path=chosen_path,
                )
            except NotFoundError:
                raise _PageError(404, f"There is no review item {item_id}.") from None
            except ReviewStateError as exc:
                self.flash(request, str(exc), error=True)
                return RedirectResponse(f"{PREFIX}/items/{item_id}{filters.query()}", status_code=303)
            done = {"approve": "Approved", "reject": "Rejected", "skip": "Skipped"}[action]
            self.flash(request, f"{done} item #{item_id}.")
            ids = [i for i in self._pending_ids(filters) if i != item_id]
            # The next item is the one after this in the queue as it was; else the first left.
            after = ids_before[ids_before.index(item_id) + 1 :] if item_id in ids_before else []
            following = next((i for i in after if i in ids), ids[0] if ids else None)
            if following is None:
                return RedirectResponse(f"{PREFIX}/{filters.query()}", status_code=303)
            return RedirectResponse(f"{PREFIX}/items/{following}{filters.query()}", status_code=303)

        @router.get("/rate")
        def rate_page(request: Request, user: AnnotatorView = page_user) -> Response:
            sample = self.store.next_for_rating(user.username)
            context: dict[str, Any] = {"sample": sample, "rated_today": None}
            if sample is not None:
                images, _ = _web_images(sample.product.image_urls)
                context |= {
                    "product": sample.product,
                    "images": images,
                    "description": _description(sample.product.description),
                    "category": sample.category_path or (self.category(sample.category_id) or {}).get("full_name"),
                    "attributes": [
                        {"name": a.name or a.handle, "values": [name or vid for vid, name in a.values]}
                        for a in sample.attributes
                    ],
                    "prediction_id": sample.prediction_id,
                }
            return self.render(request, "rate.html", user, **context)

        @router.post("/rate", dependencies=csrf)
        def rate(
            request: Request,
            prediction_id: str = Form(..., max_length=64),
            verdict: str = Form(...),
            user: AnnotatorView = page_user,
        ) -> Response:
            if verdict not in VERDICTS:
                raise _PageError(400, f"A verdict is one of {', '.join(VERDICTS)}.")
            try:
                self.store.add_rating(prediction_id, user.username, verdict)  # type: ignore[arg-type]
            except NotFoundError:
                raise _PageError(404, "There is no such prediction.") from None
            except DuplicateError:
                self.flash(request, "You rated that prediction already.", error=True)
            else:
                self.flash(request, f"Rated: {verdict}.")
            return RedirectResponse(f"{PREFIX}/rate", status_code=303)

        @router.get("/dashboard")
        def dashboard(request: Request, user: AnnotatorView = admin_user) -> Response:
            return self.render(request, "dashboard.html", user, **self._dashboard_context())

        @router.get("/users")
        def users(request: Request, user: AnnotatorView = admin_user) -> Response:
            return self.render(request, "users.html", user, **self._users_context(), error=None)

        @router.post("/users", dependencies=csrf)
        def add_user(
            request: Request,
            username: str = Form(..., max_length=64),
            password: str = Form(..., max_length=1024),
            role: str = Form("annotator", pattern="^(annotator|admin)$"),
            user: AnnotatorView = admin_user,
        ) -> Response:
            error = None
            if len(password) < 10:
                error = "A password has at least 10 characters."
            else:
                try:
                    self.store.add_annotator(username, password, role)  # type: ignore[arg-type]
                except DuplicateError:
                    error = f"{username} exists already."
                except ValueError as exc:
                    error = str(exc)
            if error is not None:
                return self.render(request, "users.html", user, 400, **self._users_context(), error=error)
            self.flash(request, f"Added {role} {username}.")
            return RedirectResponse(f"{PREFIX}/users", status_code=303)

        @router.get("/api/categories")
        async def search_categories(
            q: str = Query("", max_length=200),
            limit: int = Query(20, ge=1, le=100),
            user: AnnotatorView = api_user,
        ) -> dict[str, Any]:
            index = await self.index()
            result = index.search(q, limit)
            return {"query": q, "via": result.via, "results": [m.as_json() for m in result.matches]}

        @router.get("/api/categories/{category_id}/children")
        async def category_children(category_id: str, user: AnnotatorView = api_user) -> dict[str, Any]:
            index = await self.index()
            if category_id == "root":
                parent = None
            else:
                parent = index.get(category_id)
                if parent is None:
                    raise _PageError(404, f"unknown category {category_id!r}")
            children = index.children(parent.id if parent is not None else None)
            return {
                "parent": None if parent is None else {"id": parent.id, "full_name": parent.full_name},
                "children": [
                    {
                        "id": c.id,
                        "short_id": short_id(c.id),
                        "name": c.name,
                        "full_name": c.full_name,
                        "has_children": not c.is_leaf,
                    }
                    for c in children
                ],
            }

        return router

    # -- page contexts ------------------------------------------------------------------------

    def _item_context(
        self, item: ItemView, filters: _Filters, prev_id: int | None, next_id: int | None
    ) -> dict[str, Any]:
        p, fb = item.prediction, item.feedback
        images, local = _web_images(item.product.image_urls)
        predicted = (
            {"id": p.category_id, "full_name": p.category_path or p.category_id, "score": p.score or 0.0}
            if p.category_id
            else None
        )
        corrected = None
        if fb.corrected_category_id:
            corrected = {
                "id": fb.corrected_category_id,
                "full_name": fb.corrected_category_path
                or (self.category(fb.corrected_category_id) or {}).get("full_name"),
            }
        proposed = None
        if item.label is not None:
            proposed = {
                "id": item.label.category_id,
                "full_name": item.label.category_path or (self.category(item.label.category_id) or {}).get("full_name"),
            }
        opinion = None
        if item.second_opinion is not None:
            op = item.second_opinion
            opinion = {
                "merchant_score": f"{op.merchant_score:.2f}",
                "model_category": (self.category(op.model_category_id) or {}).get("full_name"),
                "agrees": op.agrees,
            }
        audit = [
            {
                "when": _when(fb.received_at),
                "who": f"merchant {fb.shop_id}",
                "what": fb.action,
                "category": (corrected or {}).get("full_name"),
                "note": fb.reason,
            },
            {
                "when": _when(item.created_at),
                "who": "vetting policy",
                "what": "routed",
                "category": None,
                "note": ", ".join(r.replace("_", " ") for r in item.reasons),
            },
        ]
        for d in item.decisions:
            audit.append(
                {
                    "when": _when(d.decided_at),
                    "who": d.annotator,
                    "what": d.action,
                    "category": (self.category(d.category_id) or {}).get("full_name"),
                    "note": d.note,
                }
            )
        query = filters.query()
        return {
            "item": _ItemPage(item),
            "product": item.product,
            "images": images,
            "local_images": local,
            "description": _description(item.product.description),
            "prediction_category": predicted,
            "candidates": [{"id": c.id, "full_name": c.full_name, "score": c.score} for c in p.candidates[:8]],
            "attributes": [
                {"name": a.name or a.handle, "values": [name or vid for vid, name in a.values]} for a in p.attributes
            ],
            "corrected": corrected,
            "corrected_attributes": self._attributes(fb.corrected_attributes),
            # A delete proposes nothing: the annotator must pick the category themselves.
            "default_category": proposed or corrected,
            "label_name": (proposed or {}).get("full_name"),
            "opinion": opinion,
            "audit": audit,
            "query": query,
            "queue_url": f"{PREFIX}/{query}",
            "prev_url": f"{PREFIX}/items/{prev_id}{query}" if prev_id is not None else None,
            "next_url": f"{PREFIX}/items/{next_id}{query}" if next_id is not None else None,
        }

    def _users_context(self) -> dict[str, Any]:
        annotators = [
            {"username": a.username, "role": a.role, "active": a.active, "created": _when(a.created_at)}
            for a in self.store.annotators()
        ]
        return {"annotators": annotators}

    def _dashboard_context(self) -> dict[str, Any]:
        from service.review.stats import rate

        stats = self.store.dashboard()
        verdicts = stats.verdicts
        rated = sum(verdicts.values())
        headline = {
            "Merchant acceptance": _pct(stats.acceptance),
            "Correction rate": _pct(stats.correction_rate),
            "Deletion rate": _pct(stats.deletion_rate),
            "Rejection rate (people)": _pct(stats.rejection_rate),
            "Rated correct (blind)": _pct(rate(verdicts.get("correct", 0), rated)),
        }
        overall = {
            "acceptance": stats.acceptance,
            "correction": stats.correction_rate,
            "deletion": stats.deletion_rate,
            "rejection": stats.rejection_rate,
            "rated correct": rate(verdicts.get("correct", 0), rated),
        }
        kappa = stats.kappa
        return {
            "headline": headline,
            "charts": [
                bar_chart("Merchant acceptance by vertical", stats.acceptance_by_vertical),
                bar_chart("Merchant acceptance by model version", stats.acceptance_by_model_version),
                bar_chart("Rates overall", overall),
            ],
            "by_vertical": {k: _pct(v) for k, v in stats.acceptance_by_vertical.items()},
            "by_version": {k: _pct(v) for k, v in stats.acceptance_by_model_version.items()},
            "kappa": {
                "value": "—" if kappa.kappa is None else f"{kappa.kappa:.2f}",
                "n_items": kappa.pairs,
                "n_pairs": kappa.annotator_pairs,
                "per_pair": [
                    {"a": a, "b": b, "kappa": "—" if k is None else f"{k:.2f}", "n": n}
                    for (a, b), k, n in kappa.per_pair
                ],
            },
            "verdicts": {v: verdicts.get(v, 0) for v in VERDICTS},
            "counts": stats.counts,
        }


class _ItemPage:
    """The item's fields the template reads, flattened (status, reasons, merchant action)."""

    def __init__(self, item: ItemView) -> None:
        self.id = item.id
        self.status = item.status
        self.reasons = item.reasons
        self.sensitive = item.sensitive
        self.model_version = item.model_version
        self.approvals_needed = item.approvals_needed
        self.approvals = item.approvals
        self.label = item.label
        self.action = item.feedback.action
        self.merchant_reason = item.feedback.reason
        self.shop_id = item.prediction.shop_id
        self.product_id = item.prediction.product_id
        self.created = _when(item.created_at)


def _safe_next(target: str) -> str:
    """Only a path inside the review app: no open redirect to another site."""
    if target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target and "\n" not in target:
        return target
    return f"{PREFIX}/"
