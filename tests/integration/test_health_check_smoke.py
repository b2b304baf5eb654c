from datetime import timedelta

from local.seed import open_tokens, seed_connection
from qbo_health import wiring
from qbo_health.domain.model import ConnectionState


def test_scheduled_check_refreshes_and_keeps_connection_healthy(stack, lambdas):
    seeded = seed_connection(stack, "conn-1", refreshed_days_ago=2)
    stack.clock.advance(timedelta(hours=1))

    summary = lambdas.run_scheduler(all_slots=True)
    drained = lambdas.drain_checks()

    assert summary["scheduled"] == 1
    assert drained.processed == 1
    connection = wiring.connection_store().get("conn-1")
    assert connection.state is ConnectionState.HEALTHY
    assert connection.tokens.refreshed_at == stack.clock.now()
    assert connection.last_success_at == stack.clock.now()
    assert stack.intuit.control.is_refresh_token_current(open_tokens(connection).refresh_token)
    assert stack.intuit.control.stats()["metered"].get(seeded.realm_id) == 1
    assert lambdas.counts["CheckHealthy"] == 1
    assert lambdas.counts["TokenRefreshed"] == 1
    assert lambdas.counts["ChecksScheduled"] == 1
    assert lambdas.counts["Connections_HEALTHY"] == 1
