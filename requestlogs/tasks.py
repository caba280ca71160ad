"""Background tasks (Django's tasks framework on django-tasks-db's database backend).

A task's row is written in the transaction of the work that queues it, and the worker
(``manage.py tasks_worker``, started by ``make run`` and ``make serve``) runs it. The worker
also runs the sweeps (``requestlogs.services``) every ``TASKS_SWEEP_INTERVAL_S``.
"""

from django.tasks import task


@task()
def alert_send(alert_id: int) -> str:
    """One try at sending a Slack alert; the alert's row says how it went."""
    from requestlogs.services import alert_deliver

    alert = alert_deliver(alert_id=alert_id)
    return alert.state if alert is not None else "nothing to do"
