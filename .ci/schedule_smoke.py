"""CI smoke test: the Prefect server's scheduler creates the runs of a cron deployment (it fails
every loop, silently to a client, when a dependency such as SQLAlchemy does not fit Prefect)."""

from __future__ import annotations

import sys
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.schedules import CronSchedule

with get_client(sync_client=True) as client:
    flow_id = client.create_flow_from_name("ci-schedule-smoke")
    deployment_id = client.create_deployment(
        flow_id=flow_id,
        name="smoke",
        schedules=[DeploymentScheduleCreate(schedule=CronSchedule(cron="0 3 * * *"))],
    )
    only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    for _ in range(60):
        if client.read_flow_runs(deployment_filter=only):
            print("scheduler: runs created")
            sys.exit(0)
        time.sleep(1)
sys.exit("scheduler: no runs created for a cron deployment within 60 s (see the server log)")
