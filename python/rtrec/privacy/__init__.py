"""Privacy: pseudonymous user ids, and erasing a user from files a home keeps.

The learner's side of a forget is :func:`rtrec.learn.forget.forget_user`, the log's is
:meth:`rtrec.events.EventLog.forget_users`; ``rtrec.serve.privacy`` runs them together.
"""

from rtrec.privacy.files import scrub_files
from rtrec.privacy.ids import PREFIX, Pseudonymizer, salted_hash

__all__ = ["PREFIX", "Pseudonymizer", "salted_hash", "scrub_files"]
