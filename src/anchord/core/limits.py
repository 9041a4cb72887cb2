"""Bounds on the validation work one client question may cause.

KeyTrap (CVE-2023-50387) showed that a zone can publish many DNSKEYs sharing one key tag
and many RRSIGs, so that a validator trying every (signature, key) pair does
quadratically many public-key operations for one answer. The validator charges every
signature check to a WorkBudget owned by the client question; when the budget runs out
the validator returns Bogus with an EDE saying so, never a hang or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

# Defaults in the range the patched resolvers chose in 2024: Unbound and BIND allow a
# handful of key-tag collisions and a few dozen signature validations per query.
DEFAULT_MAX_SIGNATURE_CHECKS = 64
DEFAULT_MAX_KEY_TAG_COLLISIONS = 4


@dataclass(slots=True)
class WorkBudget:
    """Mutable counters for one client question (deliberately not frozen: it is spent).

    One budget is shared by every validation step on the question's path (DNSKEY sets,
    answer RRsets, denial records), so the total work per question is bounded, not just
    the work per RRset.
    """

    max_signature_checks: int = DEFAULT_MAX_SIGNATURE_CHECKS
    max_key_tag_collisions: int = DEFAULT_MAX_KEY_TAG_COLLISIONS
    signature_checks: int = 0
    # Set once any check was refused; the validator reads it to word its EDE text.
    exhausted: bool = False

    def charge_signature(self) -> bool:
        """Account for one public-key verification; False when none is left to spend."""
        if self.signature_checks >= self.max_signature_checks:
            self.exhausted = True
            return False
        self.signature_checks += 1
        return True

    @property
    def remaining(self) -> int:
        return max(0, self.max_signature_checks - self.signature_checks)
