"""The push node's delivery: planning (plan.py: ledger rows, caps.py: the frequency cap,
expiry.py: TTLs), sending (send.py), verdicts on each answer (verdicts.py), their group
commits (commits.py), and the batch activity that runs them (activity.py)."""

from activities.delivery.activity import DeliveryActivities, DeliveryPolicy

__all__ = ["DeliveryActivities", "DeliveryPolicy"]
