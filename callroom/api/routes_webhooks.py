"""Webhook deliveries: Telnyx's ``/webhook_deliveries`` (list, retrieve), callroom's replay, the node's
webhook public keys, and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field, model_validator

from callroom.api.common import Account, Ctl, PageParams, account_id, data
from callroom.api.schemas import Body
from callroom.console.figures import OperationsFigures
from callroom.control.service import ReadCtx
from callroom.errors import ApiError, ErrorItem, NotFound, ValidationFailed
from callroom.store import deliveries, outbox
from callroom.store.deliveries import DeliveryView
from callroom.store.outbox import PendingDelivery
from callroom.timefmt import iso
from callroom.webhooks.dispatcher import Dispatcher
from callroom.webhooks.signing import WebhookSigner

router = APIRouter()

STATUSES = ("delivered", "failed", "pending")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class Unavailable(ApiError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorItem("10000", "Service unavailable", detail))


def _time(value: str | None, parameter: str) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError as exc:
        raise ValidationFailed(ErrorItem("10015", "Invalid value", "must be an ISO 8601 datetime",
                                         parameter=parameter)) from exc


def _attempt_view(a: dict[str, Any]) -> dict[str, Any]:
    ok = a["error"] is None
    response: dict[str, Any] | None = None
    if a["status_code"] is not None:
        response = {"status": a["status_code"], "body": a["response_body"] or "", "headers": []}
    return {
        "status": "delivered" if ok else "failed",
        "started_at": iso(a["started_at"]),
        "finished_at": iso(a["finished_at"]),
        "errors": [],
        "http": {"request": {"url": a["url"], "headers": []}, "response": response},
        # callroom's additions: the attempt number and why it failed
        "attempt": a["attempt"],
        "error": a["error"],
    }


def delivery_view(d: DeliveryView) -> dict[str, Any]:
    row = d.row
    status = str(row["status"])
    started = min((a["started_at"] for a in d.attempts), default=None)
    finished = max((a["finished_at"] for a in d.attempts), default=None) if status != "pending" else None
    return {
        "id": row["event_id"],
        "record_type": "webhook_delivery",
        "user_id": row["account_id"],
        "status": status,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "webhook": {
            "id": row["event_id"],
            "record_type": "event",
            "event_type": row["event_type"],
            "occurred_at": iso(row["occurred_at"]),
            "payload": row["payload"],
        },
        "attempts": [_attempt_view(a) for a in d.attempts],
    }


@router.get("/webhook_deliveries")
async def list_webhook_deliveries(
    account: Account,
    ctl: Ctl,
    page: PageParams,
    status: Annotated[str | None, Query(alias="filter[status][eq]")] = None,
    event_type: Annotated[str | None, Query(alias="filter[event_type]")] = None,
    webhook_contains: Annotated[str | None, Query(alias="filter[webhook][contains]")] = None,
    attempts_contains: Annotated[str | None, Query(alias="filter[attempts][contains]")] = None,
    started_gte: Annotated[str | None, Query(alias="filter[started_at][gte]")] = None,
    started_lte: Annotated[str | None, Query(alias="filter[started_at][lte]")] = None,
    finished_gte: Annotated[str | None, Query(alias="filter[finished_at][gte]")] = None,
    finished_lte: Annotated[str | None, Query(alias="filter[finished_at][lte]")] = None,
) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise ValidationFailed(ErrorItem("10015", "Invalid value", f"must be one of {', '.join(STATUSES)}",
                                         parameter="filter[status][eq]"))
    types = [t.strip() for t in (event_type or "").split(",") if t.strip()]
    items, total = await ctl.aread(account, lambda q: deliveries.list_deliveries(
            q.tx, account, page=page.number, size=page.size, status=status, event_types=types,
            webhook_contains=webhook_contains, attempts_contains=attempts_contains,
            created_gte=_time(started_gte, "filter[started_at][gte]"),
            created_lte=_time(started_lte, "filter[started_at][lte]"),
            finished_gte=_time(finished_gte, "filter[finished_at][gte]"),
            finished_lte=_time(finished_lte, "filter[finished_at][lte]"),
        ))
    return page.envelope([delivery_view(d) for d in items], total)


@router.get("/webhook_deliveries/{delivery_id}")
async def retrieve_webhook_delivery(delivery_id: str, account: Account, ctl: Ctl) -> dict[str, Any]:
    found = await ctl.aread(account, lambda q: deliveries.get_delivery(q.tx, account, delivery_id))
    if found is None:
        raise NotFound(f"No webhook delivery {delivery_id!r}.")
    return data(delivery_view(found))


# -- replay ---------------------------------------------------------------------------------------------


class ReplayRequest(Body):
    call_control_id: str | None = Field(default=None, min_length=1, max_length=64)
    conference_id: str | None = Field(default=None, min_length=1, max_length=64)
    from_sequence: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> ReplayRequest:
        if (self.call_control_id is None) == (self.conference_id is None):
            raise ValueError("give exactly one of call_control_id and conference_id")
        return self


def _sequence(row: PendingDelivery) -> int:
    return outbox.sequence_of(row) or 0


@router.post("/webhook_deliveries/replay")
async def replay_webhook_deliveries(body: ReplayRequest, account: Account, ctl: Ctl, request: Request) -> JSONResponse:
    """Send a call's or a conference's events again, from ``from_sequence`` on, with their original event
    ids, to the application's current URL (or the call's own ``webhook_url``)."""
    dispatcher: Dispatcher | None = getattr(request.app.state, "webhook_dispatcher", None)
    if dispatcher is None:
        raise Unavailable("The webhook dispatcher is not running.")
    key = f"call:{body.call_control_id}" if body.call_control_id else f"conference:{body.conference_id}"
    now = ctl.clock()

    def requeue(q: ReadCtx) -> list[PendingDelivery]:
        tx = q.tx
        rows = outbox.for_replay(tx, account, key)
        if not rows:
            what = "call" if body.call_control_id else "conference"
            raise NotFound(f"No webhooks of {what} {(body.call_control_id or body.conference_id)!r}.")
        chosen = [r for r in rows if _sequence(r) >= body.from_sequence]
        apps: dict[str, Any] = {}
        calls: dict[str, Any] = {}
        for r in chosen:
            conn_id = str(r.payload.get("connection_id") or "")
            if conn_id not in apps:
                apps[conn_id] = tx.get_application(account, conn_id) if conn_id else None
            app = apps[conn_id]
            about_leg = r.event_type.startswith("call.") or r.event_type.startswith("conference.participant.")
            cid = str(r.payload.get("call_control_id") or "")
            own_url = None
            if about_leg and cid:
                if cid not in calls:
                    calls[cid] = tx.get_call(account, cid)
                own_url = calls[cid].webhook_url if calls[cid] is not None else None
            r.url = own_url or (app.webhook_event_url if app else r.url)
            r.failover_url = app.webhook_event_failover_url if app else r.failover_url
            r.attempts, r.next_attempt_at = 0, now
        # Rows still pending are on their way anyway: leave them.
        again = [r for r in chosen if not dispatcher.is_queued(r.id)]
        outbox.requeue(tx, again, now, dispatcher.owner)
        return again

    again = await ctl.astore_rows(account, requeue)
    dispatcher.enqueue(again, replay=True)
    return JSONResponse({"data": {
        "record_type": "webhook_replay",
        "order_key": key,
        "from_sequence": body.from_sequence,
        "event_ids": [r.event_id for r in again],
    }}, status_code=202)


# -- public keys and metrics ----------------------------------------------------------------------------


@router.get("/public_key", include_in_schema=False)
async def public_key(request: Request) -> JSONResponse:
    """The Ed25519 public key (base64) that verifies this node's webhooks; during a key rotation's grace
    period also the previous one (its signature travels in ``callroom-signature-ed25519-previous``)."""
    signer: WebhookSigner | None = getattr(request.app.state, "webhook_signer", None)
    if signer is None:
        return JSONResponse({"data": {"public_key": request.app.state.public_key}})
    keys: list[dict[str, Any]] = [{"public_key": signer.public_key_b64, "status": "current"}]
    previous = signer.previous_public_key_b64()
    if previous is not None:
        keys.append({"public_key": previous, "status": "previous", "valid_until": iso(signer.previous_until)})
    return JSONResponse({"data": {"public_key": signer.public_key_b64, "public_keys": keys}})


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text: the webhook dispatcher's counters and the node's operations figures
    (``console/figures.py``). Open to loopback clients; anyone else needs an API key (the figures are the
    node's, across accounts, and contain no account data)."""
    client = request.client.host if request.client else ""
    if client not in LOOPBACK:
        await account_id(request)
    dispatcher: Dispatcher | None = getattr(request.app.state, "webhook_dispatcher", None)
    text = dispatcher.render_metrics() if dispatcher is not None else ""
    admission: Callable[[], str] | None = getattr(request.app.state, "admission_metrics", None)
    if admission is not None:
        text += admission()
    figures: OperationsFigures | None = getattr(request.app.state, "operations_figures", None)
    if figures is not None:
        text += figures.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
