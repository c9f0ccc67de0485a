"""Trust audits of distilled data: membership inference (privacy), backdoor attacks and
adversarial robustness, each measured on networks trained on a set next to networks trained on
random real images of the same size and on the full data (``ddkit audit NAME``).

Every audit is a module of this folder that registers an :class:`~ddkit.audits.base.Audit` in
:data:`~ddkit.audits.base.AUDITS`; :func:`load_all` finds them by walking the package.
"""

from ddkit.audits.base import AUDITS, Audit, load_all, register_audit

__all__ = ["AUDITS", "Audit", "load_all", "register_audit"]
