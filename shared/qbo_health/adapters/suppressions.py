"""Suppressed e-mail addresses, in the control table under ``SUPPRESSED#<SHA-256 of the address>``.

Keyed by a digest, so the table holds no address: a connection's contacts are matched by digesting them. One
item per address serves every connection that lists it, and the connection item (under 1 KB) is untouched.
Read only when an e-mail goes out or the status is asked for: never on a check's path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime

from qbo_health.adapters.dynamo_models import ControlModel
from qbo_health.domain.deliverability import Suppression, SuppressionReason, normalized

PREFIX = "SUPPRESSED#"


def _key(address: str) -> str:
    return PREFIX + hashlib.sha256(normalized(address).encode()).hexdigest()


class SuppressionStore:
    def suppress(self, found: Mapping[str, Suppression]) -> int:
        """Record each address (the latest reason wins); returns how many were written."""
        with ControlModel.batch_write() as batch:
            for address, suppression in found.items():
                detail = {"reason": suppression.reason.value, "detail": suppression.detail}
                batch.save(ControlModel(_key(address), at=suppression.at, detail=json.dumps(detail)))
        return len(found)

    def lift(self, address: str) -> Suppression | None:
        """E-mail to ``address`` again (ops, once the mailbox works): the suppression it had, or None."""
        found = self.suppressed([address]).get(normalized(address))
        if found is not None:
            ControlModel(_key(address)).delete()
        return found

    def suppressed(self, addresses: Iterable[str]) -> dict[str, Suppression]:
        """Those of ``addresses`` that are suppressed, by their normalized spelling."""
        by_key = {_key(address): normalized(address) for address in addresses}
        if not by_key:
            return {}
        found: dict[str, Suppression] = {}
        for item in ControlModel.batch_get(list(by_key)):
            data = json.loads(item.detail or "{}")
            at: datetime | None = item.at
            if at is None:
                continue
            found[by_key[item.key]] = Suppression(SuppressionReason(data["reason"]), at, data.get("detail"))
        return found
