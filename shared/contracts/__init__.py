"""The public contract: inbound messages, domain events, subjects and streams.

Import from here: ``from shared.contracts import HotlineCall, AppealRegistered, subjects``.
"""

from shared.contracts import subjects as subjects
from shared.contracts.common import *  # noqa: F403
from shared.contracts.events import *  # noqa: F403
from shared.contracts.inbound import *  # noqa: F403
