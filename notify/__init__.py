"""Passenger emails from the transactional outbox: rendering, senders, the notifier task."""

from .listing import NotificationRecord, format_notifications, mask_email, recent_notifications
from .messages import render_message
from .notice import Notice
from .notifier import Notifier
from .senders import Sender, SendError, sender_from_url

__all__ = [
    "Notice",
    "NotificationRecord",
    "Notifier",
    "SendError",
    "Sender",
    "format_notifications",
    "mask_email",
    "recent_notifications",
    "render_message",
    "sender_from_url",
]
