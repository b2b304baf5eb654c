"""What the QBO tile says in each of its four designs, in the connection's language. Pure: wording only.

The issue's own texts (title, message, remedy, who can fix it, the disconnect sentence) are the status API's
and the notices' (:mod:`qbo_health.domain.issues`); this module adds the tile's headings, the lines of the
designs that have no issue, and the labels of its parts. Every string is in the Babel catalogues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from qbo_health.domain.issues import format_date, headline
from qbo_health.domain.model import ConnectionState, DisconnectReason
from qbo_health.i18n import N_, gettext, ngettext

Design = Literal["healthy", "attention", "disconnected", "pending"]

DESIGNS: dict[ConnectionState, Design] = {
    ConnectionState.HEALTHY: "healthy",
    ConnectionState.NEEDS_ATTENTION: "attention",
    ConnectionState.DISCONNECTED: "disconnected",
    ConnectionState.PENDING: "pending",
}

_LABELS = {
    "region": N_("QuickBooks connection"),
    "reauthorize": N_("Reauthorize"),
    "new_window": N_("opens a new window"),
    "what_happened": N_("What happened"),
    "what_to_do": N_("What to do"),
    "who_can_fix": N_("Who can fix it"),
    "time_left": N_("Time left"),
    "window_open": N_("Finish signing in to QuickBooks in the new window."),
    "popup_blocked": N_(
        "Your browser blocked the new window. Allow pop-ups for this page, then click Reauthorize again."
    ),
    "refreshing": N_("Checking the connection again..."),
}


@dataclass(frozen=True)
class TileTexts:
    heading: str
    message: str
    remedy: str | None = None


def design_of(state: ConnectionState) -> Design:
    return DESIGNS[ConnectionState(state)]


def labels(locale: str) -> dict[str, str]:
    """The names of the tile's parts and its passing messages, in ``locale``."""
    return {name: gettext(message, locale) for name, message in _LABELS.items()}


def state_texts(
    state: ConnectionState,
    locale: str,
    *,
    user_message: str | None = None,
    remedy: str | None = None,
    first_connect: bool = False,
    disconnect_reason: DisconnectReason | None = None,
) -> TileTexts:
    """The heading and main line of the design for ``state`` (with the issue's message when it has one)."""

    def text(message: str) -> str:
        return gettext(message, locale)

    state = ConnectionState(state)
    if state is ConnectionState.HEALTHY:
        return TileTexts(text(N_("Connected to QuickBooks")), text(N_("Updates sync with QBO.")))
    if state is ConnectionState.NEEDS_ATTENTION:
        return TileTexts(headline(locale), user_message or "", remedy)
    if state is ConnectionState.DISCONNECTED:
        if disconnect_reason is DisconnectReason.CUSTOMER_REQUEST:
            why = N_("The integration was disconnected on request: updates no longer sync with QBO.")
        else:
            why = N_(
                "The integration was disconnected because the problem was not fixed in time: updates no "
                "longer sync with QBO."
            )
        again = N_("To connect again, click the Reauthorize button and sign in to QBO in the new window.")
        return TileTexts(text(N_("QuickBooks disconnected")), text(why), text(again))
    if first_connect:
        return TileTexts(
            text(N_("QuickBooks not connected yet")),
            text(N_("Connect QuickBooks from the app to start syncing updates with QBO.")),
        )
    return TileTexts(
        text(N_("Checking the QuickBooks connection")),
        text(
            N_("The first check of this QuickBooks connection is under way. It usually takes a few minutes.")
        ),
    )


def days_left_text(days_left: int, deadline: datetime, locale: str) -> str:
    """``3 days left, until January 19, 2026.`` (the notices' sentence)."""
    return ngettext(
        "%(num)d day left, until %(date)s.", "%(num)d days left, until %(date)s.", days_left, locale
    ) % {"num": days_left, "date": format_date(deadline, locale)}


def last_success_text(moment: datetime, locale: str) -> str:
    return gettext(N_("Last successful check: %(date)s."), locale) % {"date": format_date(moment, locale)}
