"""``ddkit audit NAME ...``: one sub-command per registered audit."""

from ddkit.audits.base import AUDITS, load_all
from ddkit.commands import Group, register_command

register_command(
    Group("audit", "trust audits: membership inference, backdoor, adversarial robustness",
          AUDITS, load_all)
)  # fmt: skip
