"""Imitation privacy: how closely a module can be imitated, and (ε, δ)-privacy estimates."""

from modelsteal.privacy.imitation import (
    imitation_loss,
    imitation_privacy,
    is_private,
    multi_task_privacy,
    privacy_probability,
)

__all__ = [
    "imitation_loss",
    "imitation_privacy",
    "is_private",
    "multi_task_privacy",
    "privacy_probability",
]
