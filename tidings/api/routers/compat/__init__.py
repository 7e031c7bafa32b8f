"""The Customer Insights - Journeys compatible surface, under ``/compat/ci-journeys/``.

A mobile backend (or app) written for Customer Insights - Journeys switches to tidings by
changing its ``{PublicEndpoint}`` to ``https://<tidings>/compat/ci-journeys/``: the paths
(``api/v1.0/orgs/<orgId>/...``), bodies, headers and answers are the original's. The
``MobileAppId`` is the tidings app id and the ``ApiToken`` one of the app's API keys; the
org id is accepted and ignored (a tidings deployment is one organisation).
"""

from fastapi import APIRouter

from tidings.api.routers.compat import interactions, registration

PREFIX = "/compat/ci-journeys/api/v1.0/orgs/{org_id}"

router = APIRouter(prefix=PREFIX)
router.include_router(registration.router)
router.include_router(interactions.router)

__all__ = ["PREFIX", "router"]
