"""What the API counts (``ipydoc_api_requests``): answers by operation and status.

``operation`` is the endpoint's ``operationId`` in the OpenAPI document (a fixed set), or
``unmatched`` for a path or method the API does not have; no user name is a label.
"""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("ipydoc_api_requests", "Answers of /hub/api/ by operation (its OpenAPI "
                   "operationId, or unmatched) and HTTP status", ["operation", "status"])


def answered(operation: str, status: int) -> None:
    REQUESTS.labels(operation, str(status)).inc()
