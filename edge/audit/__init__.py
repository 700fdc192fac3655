"""The central side's reference consumer: is the delivery promise kept? (docs/audit.md)

:class:`~edge.audit.ledger.Ledger` accounts for what arrived, with no I/O;
:class:`~edge.audit.listener.Auditor` subscribes to a broker and feeds one.
"""
