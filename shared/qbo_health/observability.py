"""The one place Logger, Tracer and Metrics are created. Handlers decorate; everything else imports these."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "qbo-connection-health"
NAMESPACE = "QboConnectionHealth"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
