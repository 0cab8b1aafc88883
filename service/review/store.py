"""The review store: merchant feedback, the review queue, decisions, accounts and ratings.

One class, `ReviewStore(url)`, over SQLAlchemy: an embedded SQLite file by default (nothing
to install), PostgreSQL in production (`postgresql+psycopg://...`). The schema belongs to
the Alembic migrations (`service/review/migrations/`); the store upgrades to head when it
is built, under a lock (a process lock, plus a file lock for SQLite or an advisory lock for
PostgreSQL), so several replicas or workers starting at once migrate once.

Why these rules:
- Everything the app renders is returned as frozen dataclasses, never ORM objects, so a
  page is rendered after the session is closed and no lazy load reaches the database from
  a template.
- Feedback is idempotent per (prediction, shop, action): the served prediction, the
  feedback and its review item are written in one transaction; a concurrent duplicate
  loses on the unique constraint and re-reads the winner's result (`created=False`), so
  1,000 events at once end with no duplicate and nothing lost.
- Decisions are an append-only audit trail; the item's status is derived from them by the
  k-of-n rule in `_settle` (documented there and in README.md).
- On SQLite every transaction starts with BEGIN IMMEDIATE: SQLite cannot upgrade a read
  lock to a write lock under contention without failing at once, so writers queue on the
  busy timeout instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from service.review.feedback import FeedbackIn, ServedRecord
from service.review.models import Annotator, Decision, Feedback, Rating, ReviewItem, ServedPrediction
from service.review.policy import Routing
from service.review.stats import DashboardStats, FeedbackRow, RatingRow, compute_dashboard

__all__ = [
    "DEFAULT_URL",
    "ROLES",
    "VERDICTS",
    "AnnotatorView",
    "AttributeView",
    "CandidateView",
    "DecisionView",
    "DuplicateError",
    "FeedbackResult",
    "FeedbackView",
    "ItemSummary",
    "ItemView",
    "LabelView",
    "NotFoundError",
    "OpinionView",
    "PredictionView",
    "ProductView",
    "QueueFilter",
    "RatingSample",
    "ReviewError",
    "ReviewStateError",
    "ReviewStore",
    "VettedLabel",
    "hash_password",
    "verify_password",
]

DEFAULT_URL = "sqlite:///review.sqlite"
ROLES = ("annotator", "admin")
VERDICTS = ("correct", "partly", "wrong")
DecisionAction = Literal["approve", "reject", "skip"]
Verdict = Literal["correct", "partly", "wrong"]
Role = Literal["annotator", "admin"]
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# An advisory lock key for PostgreSQL migrations (any constant shared by all replicas).
_PG_MIGRATION_LOCK = 0x70726F64
_MIGRATE_LOCK = threading.Lock()


class ReviewError(Exception):
    """Base of the store's errors (the app turns them into 4xx answers)."""


class ReviewStateError(ReviewError):
    """The item is not in a state that allows the action (e.g. deciding a decided item)."""


class NotFoundError(ReviewError, LookupError):
    """No such item, prediction or annotator."""


class DuplicateError(ReviewError):
    """The thing exists already (an annotator's username, a second rating)."""


# -- views ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductView:
    title: str
    description: str
    image_urls: tuple[str, ...]
    product_type: str
    vendor: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class CandidateView:
    id: str
    full_name: str
    score: float


@dataclass(frozen=True)
class AttributeView:
    """A predicted attribute: handle, display name, values as (id, name) pairs."""

    handle: str
    name: str
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PredictionView:
    prediction_id: str
    product_id: str
    shop_id: str
    model_version: str
    taxonomy_version: str
    category_id: str | None
    category_path: str | None
    score: float | None
    status: str
    candidates: tuple[CandidateView, ...]
    attributes: tuple[AttributeView, ...]
    served_at: datetime


@dataclass(frozen=True)
class FeedbackView:
    id: int
    shop_id: str
    action: str
    corrected_category_id: str | None
    corrected_category_path: str | None
    corrected_attributes: Mapping[str, tuple[str, ...]]  # {handle: (value ids)}
    reason: str | None
    received_at: datetime


@dataclass(frozen=True)
class OpinionView:
    """The second model opinion on a merchant's correction."""

    merchant_score: float
    model_category_id: str | None
    agrees: bool
    judge: str = ""


@dataclass(frozen=True)
class LabelView:
    category_id: str
    category_path: str | None
    attributes: Mapping[str, tuple[str, ...]]  # {handle: (value ids)}


@dataclass(frozen=True)
class DecisionView:
    id: int
    annotator: str
    action: str
    category_id: str | None
    attributes: Mapping[str, tuple[str, ...]] | None
    note: str | None
    decided_at: datetime


@dataclass(frozen=True)
class ItemSummary:
    """One row of the queue."""

    id: int
    status: str
    reasons: tuple[str, ...]
    sensitive: bool
    vertical: str | None
    model_version: str
    action: str
    title: str
    predicted_category_id: str | None
    predicted_category_path: str | None
    corrected_category_id: str | None
    corrected_category_path: str | None
    approvals_needed: int
    approvals: int
    created_at: datetime


@dataclass(frozen=True)
class ItemView:
    """Everything the item page shows."""

    id: int
    status: str
    reasons: tuple[str, ...]
    sensitive: bool
    vertical: str | None
    model_version: str
    approvals_needed: int
    approvals: int  # distinct annotators whose latest vote is approve
    approved_by: tuple[str, ...]
    agree_on: tuple[str, ...]  # attribute handles approvals must agree on
    label: LabelView | None  # proposed label while pending; the vetted one once approved
    product: ProductView
    prediction: PredictionView
    feedback: FeedbackView
    second_opinion: OpinionView | None
    decisions: tuple[DecisionView, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FeedbackResult:
    feedback_id: int
    item_id: int
    prediction_id: str
    shop_id: str
    action: str
    status: str
    reasons: tuple[str, ...]
    sensitive: bool
    approvals_needed: int
    created: bool  # False for a duplicate or replay (nothing was written)


@dataclass(frozen=True)
class QueueFilter:
    status: str | None = "pending"  # None: every status
    vertical: str | None = None
    reason: str | None = None
    sensitive: bool | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class AnnotatorView:
    username: str
    role: str
    active: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class RatingSample:
    """A blind sample: the product and what the model predicted, never the merchant's
    feedback, the model's scores or its version."""

    prediction_id: str
    product: ProductView
    category_id: str | None
    category_path: str | None
    attributes: tuple[AttributeView, ...]


@dataclass(frozen=True)
class VettedLabel:
    item_id: int
    prediction_id: str
    product_id: str
    shop_id: str
    product: ProductView
    category_id: str
    category_path: str | None
    attributes: Mapping[str, tuple[str, ...]]  # {handle: (value ids)}
    how: str  # approved | auto_vetted
    reasons: tuple[str, ...]
    annotators: tuple[str, ...]
    action: str
    model_version: str
    taxonomy_version: str
    vetted_at: datetime


# -- passwords --------------------------------------------------------------------------

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (hex), salted per account."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


# A hash to compare against when the user is unknown, so a missing account takes as long.
_DUMMY_HASH = hash_password("not-a-password")


# -- helpers ----------------------------------------------------------------------------


def _aware(t: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _now(now: datetime | None) -> datetime:
    return _aware(now) if now is not None else datetime.now(UTC)


def _values(attrs: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    return {str(h): tuple(str(v) for v in vs) for h, vs in (attrs or {}).items()}


def _product_view(product: Mapping[str, Any]) -> ProductView:
    tags = product.get("tags") or ()
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    return ProductView(
        title=str(product.get("title") or ""),
        description=str(product.get("description_html") or product.get("description") or ""),
        image_urls=tuple(str(u) for u in product.get("image_urls") or ()),
        product_type=str(product.get("product_type") or ""),
        vendor=str(product.get("vendor") or ""),
        tags=tuple(str(t) for t in tags),
    )


def _attribute_views(prediction: Mapping[str, Any]) -> tuple[AttributeView, ...]:
    return tuple(
        AttributeView(
            handle=str(a.get("handle", "")),
            name=str(a.get("name", "")),
            values=tuple((str(v.get("id", "")), str(v.get("name", ""))) for v in a.get("values") or ()),
        )
        for a in prediction.get("attributes") or ()
    )


def _prediction_view(sp: ServedPrediction) -> PredictionView:
    p = sp.prediction or {}
    c = p.get("category") or {}
    return PredictionView(
        prediction_id=sp.prediction_id,
        product_id=sp.product_id,
        shop_id=sp.shop_id,
        model_version=sp.model_version,
        taxonomy_version=sp.taxonomy_version,
        category_id=c.get("id"),
        category_path=c.get("full_name"),
        score=float(c["score"]) if c.get("score") is not None else None,
        status=str(p.get("status", "")),
        candidates=tuple(
            CandidateView(
                id=str(x.get("id", "")), full_name=str(x.get("full_name", "")), score=float(x.get("score", 0))
            )
            for x in c.get("candidates") or ()
        ),
        attributes=_attribute_views(p),
        served_at=_aware(sp.served_at),
    )


def _feedback_view(f: Feedback) -> FeedbackView:
    return FeedbackView(
        id=f.id,
        shop_id=f.shop_id,
        action=f.action,
        corrected_category_id=f.corrected_category_id,
        corrected_category_path=f.corrected_category_path,
        corrected_attributes=_values(f.corrected_attributes),
        reason=f.reason,
        received_at=_aware(f.received_at),
    )


def _label_view(label: Mapping[str, Any] | None) -> LabelView | None:
    if not label or not label.get("category_id"):
        return None
    return LabelView(
        category_id=str(label["category_id"]),
        category_path=label.get("category_path"),
        attributes=_values(label.get("attributes")),
    )


def _latest_votes(item: ReviewItem) -> dict[str, Decision]:
    """Each annotator's latest approve or reject (skips do not vote)."""
    votes: dict[str, Decision] = {}
    for d in item.decisions:
        if d.action in ("approve", "reject"):
            votes[d.annotator] = d
    return votes


def _approvers(item: ReviewItem) -> tuple[str, ...]:
    return tuple(sorted(a for a, d in _latest_votes(item).items() if d.action == "approve"))


def _result(f: Feedback, item: ReviewItem, created: bool) -> FeedbackResult:
    return FeedbackResult(
        feedback_id=f.id,
        item_id=item.id,
        prediction_id=f.prediction_id,
        shop_id=f.shop_id,
        action=f.action,
        status=item.status,
        reasons=tuple(item.reasons or ()),
        sensitive=item.sensitive,
        approvals_needed=item.approvals_needed,
        created=created,
    )


# -- migrations -------------------------------------------------------------------------


def alembic_config(url: str) -> Any:
    """A programmatic Alembic config (no alembic.ini needed) for `url`."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations to `revision` on `engine`, once even when several processes or
    threads start together."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with _MIGRATE_LOCK:
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            lock: Any = _file_lock(Path(str(engine.url.database) + ".migrate-lock"))
        else:
            lock = _null()
        with lock, engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


@contextmanager
def _null() -> Iterator[None]:
    yield


# -- the store --------------------------------------------------------------------------


def make_engine(url: str) -> Engine:
    """An engine with the settings the store relies on (see the module docstring)."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # the "begin" hook below starts transactions
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class ReviewStore:
    """Thread-safe; every method is one short transaction. Build once per process."""

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        # A StaticPool (in-memory SQLite) shares one connection: serialise its users.
        self._serial = threading.RLock() if isinstance(self.engine.pool, StaticPool) else None
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Feedback inserts that lost a race to a concurrent duplicate and re-read (a metric).
        self.races_lost = 0

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        lock = self._serial or _null()
        with lock, self._sessions.begin() as session:
            yield session

    def _insert(self, model: type[Any]) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # -- served predictions and feedback ------------------------------------------------

    def _ensure_served(self, session: Session, served: ServedRecord) -> None:
        stmt = (
            self._insert(ServedPrediction)
            .values(
                prediction_id=served.prediction_id,
                product_id=served.product_id,
                shop_id=served.shop_id,
                model_version=served.model_version,
                taxonomy_version=served.taxonomy_version,
                category_id=served.category_id,
                vertical=served.vertical,
                prediction=dict(served.prediction),
                product=dict(served.product),
                served_at=_aware(served.served_at),
            )
            .on_conflict_do_nothing(index_elements=["prediction_id"])
        )
        session.execute(stmt)

    def record_served(self, served: ServedRecord) -> bool:
        """Keep a served prediction (for blind rating samples); True when it was new."""
        with self._tx() as session:
            existed = session.get(ServedPrediction, served.prediction_id) is not None
            if not existed:
                self._ensure_served(session, served)
            return not existed

    def has_prediction(self, prediction_id: str) -> bool:
        with self._tx() as session:
            return session.get(ServedPrediction, prediction_id) is not None

    def accept_count(self, model_version: str) -> int:
        """Accepts stored for predictions of `model_version` (the audit rate depends on it)."""
        with self._tx() as session:
            return int(
                session.execute(
                    select(func.count(Feedback.id))
                    .join(ServedPrediction, Feedback.prediction_id == ServedPrediction.prediction_id)
                    .where(Feedback.action == "accept", ServedPrediction.model_version == model_version)
                ).scalar_one()
            )

    def feedback_result(self, prediction_id: str, shop_id: str, action: str) -> FeedbackResult | None:
        """The stored result of this feedback, or None when there is none yet."""
        with self._tx() as session:
            return self._existing(session, prediction_id, shop_id, action)

    def _existing(self, session: Session, prediction_id: str, shop_id: str, action: str) -> FeedbackResult | None:
        row = session.execute(
            select(Feedback, ReviewItem)
            .join(ReviewItem, ReviewItem.feedback_id == Feedback.id)
            .where(Feedback.prediction_id == prediction_id, Feedback.shop_id == shop_id, Feedback.action == action)
        ).first()
        return _result(row[0], row[1], created=False) if row else None

    def record_feedback(
        self, served: ServedRecord, feedback: FeedbackIn, routing: Routing, now: datetime | None = None
    ) -> FeedbackResult:
        """Store the served prediction (if new), the feedback and its review item in one
        transaction. A duplicate (same prediction, shop and action) returns the stored
        result with `created=False`, also when it loses a race to a concurrent writer."""
        if served.prediction_id != feedback.prediction_id:
            raise ValueError(f"feedback for {feedback.prediction_id!r} given with served {served.prediction_id!r}")
        now = _now(now)
        for _attempt in range(3):
            try:
                with self._tx() as session:
                    existing = self._existing(session, feedback.prediction_id, feedback.shop_id, feedback.action)
                    if existing is not None:
                        return existing
                    self._ensure_served(session, served)
                    corrected_path = None
                    if routing.label and feedback.action == "correct":
                        corrected_path = routing.label.get("category_path")
                    f = Feedback(
                        prediction_id=feedback.prediction_id,
                        shop_id=feedback.shop_id,
                        action=feedback.action,
                        corrected_category_id=feedback.category_id,
                        corrected_category_path=corrected_path,
                        corrected_attributes=dict(feedback.attributes) if feedback.attributes else None,
                        reason=feedback.reason,
                        received_at=now,
                    )
                    session.add(f)
                    session.flush()
                    reasons = list(routing.reasons)
                    item = ReviewItem(
                        feedback_id=f.id,
                        status=routing.status,
                        reasons=reasons,
                        reasons_key="," + ",".join(reasons) + ",",
                        sensitive=routing.sensitive,
                        vertical=served.vertical,
                        model_version=served.model_version,
                        second_opinion=dict(routing.second_opinion) if routing.second_opinion else None,
                        approvals_needed=max(1, routing.approvals_needed),
                        agree_on=list(routing.agree_on),
                        label=_plain(routing.label),
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(item)
                    session.flush()
                    return _result(f, item, created=True)
            except IntegrityError:
                # A concurrent writer stored the same feedback first: its result is ours.
                self.races_lost += 1
                existing = self.feedback_result(feedback.prediction_id, feedback.shop_id, feedback.action)
                if existing is not None:
                    return existing
        raise ReviewError(f"could not store feedback on {feedback.prediction_id!r} after 3 attempts")

    # -- the queue ----------------------------------------------------------------------

    def queue(self, filter: QueueFilter | None = None, limit: int = 50, offset: int = 0) -> list[ItemSummary]:
        """Items matching `filter`, oldest first (a queue), sensitive ones first."""
        f = filter or QueueFilter()
        with self._tx() as session:
            stmt = (
                select(ReviewItem, Feedback, ServedPrediction)
                .join(Feedback, ReviewItem.feedback_id == Feedback.id)
                .join(ServedPrediction, Feedback.prediction_id == ServedPrediction.prediction_id)
            )
            if f.status:
                stmt = stmt.where(ReviewItem.status == f.status)
            if f.vertical:
                stmt = stmt.where(ReviewItem.vertical == f.vertical)
            if f.reason:
                stmt = stmt.where(ReviewItem.reasons_key.like(f"%,{_like_escape(f.reason)},%", escape="\\"))
            if f.sensitive is not None:
                stmt = stmt.where(ReviewItem.sensitive == f.sensitive)
            if f.model_version:
                stmt = stmt.where(ReviewItem.model_version == f.model_version)
            stmt = (
                stmt.order_by(ReviewItem.sensitive.desc(), ReviewItem.created_at, ReviewItem.id)
                .limit(max(0, min(limit, 1000)))
                .offset(max(0, offset))
            )
            rows = session.execute(stmt).all()
            out = []
            for item, fb, sp in rows:
                c = (sp.prediction or {}).get("category") or {}
                out.append(
                    ItemSummary(
                        id=item.id,
                        status=item.status,
                        reasons=tuple(item.reasons or ()),
                        sensitive=item.sensitive,
                        vertical=item.vertical,
                        model_version=item.model_version,
                        action=fb.action,
                        title=str((sp.product or {}).get("title") or ""),
                        predicted_category_id=c.get("id"),
                        predicted_category_path=c.get("full_name"),
                        corrected_category_id=fb.corrected_category_id,
                        corrected_category_path=fb.corrected_category_path,
                        approvals_needed=item.approvals_needed,
                        approvals=len(_approvers(item)),
                        created_at=_aware(item.created_at),
                    )
                )
            return out

    def count(self, filter: QueueFilter | None = None) -> int:
        """How many items match `filter` (for paging)."""
        f = filter or QueueFilter()
        with self._tx() as session:
            stmt = select(func.count(ReviewItem.id))
            if f.status:
                stmt = stmt.where(ReviewItem.status == f.status)
            if f.vertical:
                stmt = stmt.where(ReviewItem.vertical == f.vertical)
            if f.reason:
                stmt = stmt.where(ReviewItem.reasons_key.like(f"%,{_like_escape(f.reason)},%", escape="\\"))
            if f.sensitive is not None:
                stmt = stmt.where(ReviewItem.sensitive == f.sensitive)
            if f.model_version:
                stmt = stmt.where(ReviewItem.model_version == f.model_version)
            return int(session.execute(stmt).scalar_one())

    def facets(self) -> dict[str, list[str]]:
        """The values the queue filters can take: verticals, reasons, model_versions, statuses."""
        with self._tx() as session:
            verticals = session.execute(select(ReviewItem.vertical).distinct()).scalars().all()
            versions = session.execute(select(ReviewItem.model_version).distinct()).scalars().all()
            keys = session.execute(select(ReviewItem.reasons_key).distinct()).scalars().all()
            statuses = session.execute(select(ReviewItem.status).distinct()).scalars().all()
        reasons = {r for k in keys for r in (k or "").split(",") if r}
        return {
            "verticals": sorted(v for v in verticals if v),
            "reasons": sorted(reasons),
            "model_versions": sorted(v for v in versions if v),
            "statuses": sorted(s for s in statuses if s),
        }

    def item(self, item_id: int) -> ItemView | None:
        with self._tx() as session:
            item = session.get(ReviewItem, item_id)
            return self._item_view(item) if item is not None else None

    def _item_view(self, item: ReviewItem) -> ItemView:
        fb = item.feedback
        sp = fb.served
        op = item.second_opinion
        approvers = _approvers(item)
        return ItemView(
            id=item.id,
            status=item.status,
            reasons=tuple(item.reasons or ()),
            sensitive=item.sensitive,
            vertical=item.vertical,
            model_version=item.model_version,
            approvals_needed=item.approvals_needed,
            approvals=len(approvers),
            approved_by=approvers,
            agree_on=tuple(item.agree_on or ()),
            label=_label_view(item.label),
            product=_product_view(sp.product or {}),
            prediction=_prediction_view(sp),
            feedback=_feedback_view(fb),
            second_opinion=OpinionView(
                merchant_score=float(op.get("merchant_score", 0.0)),
                model_category_id=op.get("model_category_id"),
                agrees=bool(op.get("agrees")),
                judge=str(op.get("judge", "")),
            )
            if op
            else None,
            decisions=tuple(
                DecisionView(
                    id=d.id,
                    annotator=d.annotator,
                    action=d.action,
                    category_id=d.category_id,
                    attributes=_values(d.attributes) if d.attributes is not None else None,
                    note=d.note,
                    decided_at=_aware(d.decided_at),
                )
                for d in item.decisions
            ),
            created_at=_aware(item.created_at),
            updated_at=_aware(item.updated_at),
        )

    # -- decisions ------------------------------------------------------------------------

    def decide(
        self,
        item_id: int,
        annotator: str,
        action: DecisionAction,
        category_id: str | None = None,
        attributes: Mapping[str, Sequence[str]] | None = None,
        note: str | None = None,
        now: datetime | None = None,
        *,
        category_path: str | None = None,
    ) -> ItemView:
        """Append a decision and settle the item (`_settle`). `category_id` (approve only)
        overrides the proposed category and `attributes` ({handle: [value ids]}) the
        proposed values; the caller validates both against the taxonomy and passes the
        override's `category_path`. Raises NotFoundError, ReviewStateError (item not
        pending, inactive annotator, approving a delete without a category)."""
        if action not in ("approve", "reject", "skip"):
            raise ValueError(f"action must be approve, reject or skip, not {action!r}")
        if action != "approve" and (category_id is not None or attributes is not None):
            raise ValueError("a category or attributes go with approve only")
        now = _now(now)
        with self._tx() as session:
            item = session.get(ReviewItem, item_id, with_for_update=self.engine.dialect.name == "postgresql")
            if item is None:
                raise NotFoundError(f"no review item {item_id}")
            who = session.get(Annotator, annotator)
            if who is None or not who.active:
                raise ReviewStateError(f"{annotator!r} is not an active annotator")
            if item.status != "pending":
                raise ReviewStateError(f"item {item_id} is {item.status}, not pending: it cannot be decided again")
            if action == "approve" and category_id is None and not (item.label or {}).get("category_id"):
                raise ReviewStateError(
                    f"item {item_id} has no proposed category ({item.feedback.action}): approve it with a category"
                )
            session.add(
                Decision(
                    item_id=item.id,
                    annotator=annotator,
                    action=action,
                    category_id=category_id,
                    attributes=_plain(_proposed_attrs(attributes, category_path)) if attributes is not None else None,
                    note=note[:2000] if note else None,
                    decided_at=now,
                )
            )
            if category_path is not None and category_id is not None:
                # Remember the override's path for display and export (not on Decision's columns).
                paths = dict((item.label or {}).get("paths") or {})
                paths[category_id] = category_path
                item.label = {**(item.label or {}), "paths": paths}
            session.flush()
            session.refresh(item, ["decisions"])
            self._settle(item, who.role == "admin" and action == "reject", now)
            item.updated_at = now
            session.flush()
            return self._item_view(item)

    @staticmethod
    def _settle(item: ReviewItem, admin_reject: bool, now: datetime) -> None:
        """The k-of-n rule. k = `approvals_needed`; n = 2k - 1 distinct voters at most.

        - Each annotator's latest approve or reject is their vote (approving twice counts once).
        - An approval's label is its category (the override, else the proposed one) plus,
          for the handles in `agree_on`, its attribute values (the override, else the
          proposed ones).
        - `approved` once k distinct annotators approve the same label; the label becomes
          the vetted label.
        - `rejected` on a reject by an admin, or once n distinct annotators have voted and
          no label has k approvals (they can no longer agree: with k = 1 one reject
          rejects; with k = 2, three voters without two agreeing).
        - otherwise still `pending`.
        """
        if admin_reject:
            item.status = "rejected"
            return
        k = max(1, item.approvals_needed)
        n = 2 * k - 1
        proposed = item.label or {}
        paths = proposed.get("paths") or {}
        agree_on = list(item.agree_on or ())
        votes = _latest_votes(item)
        groups: dict[str, list[Decision]] = {}
        for d in votes.values():
            if d.action != "approve":
                continue
            category = d.category_id or proposed.get("category_id")
            attrs = dict(proposed.get("attributes") or {})
            if d.attributes is not None:
                attrs.update(d.attributes)
            key = repr((category, tuple((h, tuple(sorted(attrs.get(h) or ()))) for h in sorted(agree_on))))
            groups.setdefault(key, []).append(d)
        for decisions in groups.values():
            if len(decisions) >= k:
                first = decisions[0]
                category = first.category_id or proposed.get("category_id")
                attrs = dict(proposed.get("attributes") or {})
                for d in decisions:  # agreeing approvals agree on agree_on; others: latest wins
                    if d.attributes is not None:
                        attrs.update(d.attributes)
                path = paths.get(category) if first.category_id else proposed.get("category_path")
                if path is None and category == proposed.get("category_id"):
                    path = proposed.get("category_path")
                item.label = {
                    "category_id": category,
                    "category_path": path,
                    "attributes": attrs,
                    "approved_by": sorted(d.annotator for d in decisions),
                    "proposed": {k2: v for k2, v in proposed.items() if k2 != "proposed"},
                }
                item.status = "approved"
                return
        if len(votes) >= n:
            item.status = "rejected"

    # -- accounts -------------------------------------------------------------------------

    def add_annotator(self, username: str, password: str, role: Role = "annotator") -> AnnotatorView:
        username = username.strip()
        if not username or len(username) > 64 or not username.isprintable() or " " in username:
            raise ValueError("a username has 1 to 64 printable characters and no spaces")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        hashed = hash_password(password)
        try:
            with self._tx() as session:
                if session.get(Annotator, username) is not None:
                    raise DuplicateError(f"annotator {username!r} exists already")
                a = Annotator(username=username, password_hash=hashed, role=role, active=True, created_at=_now(None))
                session.add(a)
                session.flush()
                return _annotator_view(a)
        except IntegrityError as exc:
            raise DuplicateError(f"annotator {username!r} exists already") from exc

    def set_password(self, username: str, password: str) -> None:
        with self._tx() as session:
            a = session.get(Annotator, username)
            if a is None:
                raise NotFoundError(f"no annotator {username!r}")
            a.password_hash = hash_password(password)

    def set_active(self, username: str, active: bool) -> None:
        with self._tx() as session:
            a = session.get(Annotator, username)
            if a is None:
                raise NotFoundError(f"no annotator {username!r}")
            a.active = active

    def authenticate(self, username: str, password: str) -> AnnotatorView | None:
        """The account when the password is right and the account active, else None. An
        unknown user costs the same scrypt as a wrong password."""
        with self._tx() as session:
            a = session.get(Annotator, username)
            view = _annotator_view(a) if a is not None else None
            stored = a.password_hash if a is not None else _DUMMY_HASH
        ok = verify_password(password, stored)
        if view is None or not ok or not view.active:
            return None
        return view

    def annotator(self, username: str) -> AnnotatorView | None:
        with self._tx() as session:
            a = session.get(Annotator, username)
            return _annotator_view(a) if a is not None else None

    def annotators(self) -> list[AnnotatorView]:
        with self._tx() as session:
            return [
                _annotator_view(a) for a in session.execute(select(Annotator).order_by(Annotator.username)).scalars()
            ]

    # -- continuous human evaluation -----------------------------------------------------

    def next_for_rating(self, annotator: str, since: datetime | None = None) -> RatingSample | None:
        """A served prediction this annotator has not rated: first one that exactly one
        other annotator rated (it makes an agreement pair), else the most recent."""
        with self._tx() as session:
            mine = select(Rating.prediction_id).where(Rating.annotator == annotator)
            counts = (
                select(Rating.prediction_id, func.count(Rating.id).label("n")).group_by(Rating.prediction_id).subquery()
            )
            base = (
                select(ServedPrediction)
                .outerjoin(counts, counts.c.prediction_id == ServedPrediction.prediction_id)
                .where(ServedPrediction.prediction_id.not_in(mine))
            )
            if since is not None:
                base = base.where(ServedPrediction.served_at >= _aware(since))
            sp = session.execute(
                base.where(counts.c.n == 1).order_by(ServedPrediction.served_at.desc()).limit(1)
            ).scalar_one_or_none()
            if sp is None:
                sp = session.execute(base.order_by(ServedPrediction.served_at.desc()).limit(1)).scalar_one_or_none()
            if sp is None:
                return None
            c = (sp.prediction or {}).get("category") or {}
            return RatingSample(
                prediction_id=sp.prediction_id,
                product=_product_view(sp.product or {}),
                category_id=c.get("id"),
                category_path=c.get("full_name"),
                attributes=_attribute_views(sp.prediction or {}),
            )

    def add_rating(self, prediction_id: str, annotator: str, verdict: Verdict, now: datetime | None = None) -> None:
        """One blind verdict per annotator and prediction (a second one: DuplicateError)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        try:
            with self._tx() as session:
                sp = session.get(ServedPrediction, prediction_id)
                if sp is None:
                    raise NotFoundError(f"no served prediction {prediction_id!r}")
                if session.get(Annotator, annotator) is None:
                    raise NotFoundError(f"no annotator {annotator!r}")
                done = session.execute(
                    select(Rating.id).where(Rating.prediction_id == prediction_id, Rating.annotator == annotator)
                ).first()
                if done:
                    raise DuplicateError(f"{annotator!r} rated {prediction_id!r} already")
                c = (sp.prediction or {}).get("category") or {}
                session.add(
                    Rating(
                        prediction_id=prediction_id,
                        annotator=annotator,
                        verdict=verdict,
                        rated_at=_now(now),
                        score=float(c["score"]) if c.get("score") is not None else None,
                    )
                )
        except IntegrityError as exc:
            raise DuplicateError(f"{annotator!r} rated {prediction_id!r} already") from exc

    # -- dashboard and export --------------------------------------------------------------

    def dashboard(self) -> DashboardStats:
        """`stats.DashboardStats` over everything stored."""

        with self._tx() as session:
            fb = session.execute(
                select(Feedback.action, ServedPrediction.vertical, ServedPrediction.model_version).join(
                    ServedPrediction, Feedback.prediction_id == ServedPrediction.prediction_id
                )
            ).all()
            items = session.execute(select(ReviewItem.status)).scalars().all()
            ratings = session.execute(select(Rating.prediction_id, Rating.annotator, Rating.verdict)).all()
            served = session.execute(select(func.count(ServedPrediction.prediction_id))).scalar_one()
        return compute_dashboard(
            feedback=[FeedbackRow(action=a, vertical=v, model_version=m) for a, v, m in fb],
            item_statuses=list(items),
            ratings=[RatingRow(prediction_id=p, annotator=a, verdict=v) for p, a, v in ratings],
            served=int(served),
        )

    def vetted_labels(self, batch: int = 500) -> Iterator[VettedLabel]:
        """Approved and auto-vetted items with a label, in item order (read in batches)."""
        last = 0
        while True:
            with self._tx() as session:
                items = (
                    session.execute(
                        select(ReviewItem)
                        .where(ReviewItem.status.in_(("approved", "auto_vetted")), ReviewItem.id > last)
                        .order_by(ReviewItem.id)
                        .limit(batch)
                    )
                    .scalars()
                    .all()
                )
                out = [v for v in (self._vetted(i) for i in items) if v is not None]
                if items:
                    last = items[-1].id
            yield from out
            if len(items) < batch:
                return

    @staticmethod
    def _vetted(item: ReviewItem) -> VettedLabel | None:
        label = item.label or {}
        if not label.get("category_id"):
            return None
        fb = item.feedback
        sp = fb.served
        annotators = tuple(label.get("approved_by") or ())
        at = max((_aware(d.decided_at) for d in item.decisions), default=_aware(item.updated_at))
        return VettedLabel(
            item_id=item.id,
            prediction_id=sp.prediction_id,
            product_id=sp.product_id,
            shop_id=sp.shop_id,
            product=_product_view(sp.product or {}),
            category_id=str(label["category_id"]),
            category_path=label.get("category_path"),
            attributes=_values(label.get("attributes")),
            how=item.status,
            reasons=tuple(item.reasons or ()),
            annotators=annotators,
            action=fb.action,
            model_version=sp.model_version,
            taxonomy_version=sp.taxonomy_version,
            vetted_at=at,
        )


def _annotator_view(a: Annotator) -> AnnotatorView:
    return AnnotatorView(username=a.username, role=a.role, active=bool(a.active), created_at=_aware(a.created_at))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _plain(value: Any) -> Any:
    """Mappings and sequences -> dicts and lists (JSON columns)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _proposed_attrs(attributes: Mapping[str, Sequence[str]], _path: str | None) -> dict[str, list[str]]:
    return {str(h): [str(v) for v in vs] for h, vs in attributes.items()}


__all__ += ["alembic_config", "make_engine", "upgrade"]
