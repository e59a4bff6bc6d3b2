"""The held-out split, stable per sample across versions. Pure."""

import hashlib

HOLDOUT_BUCKETS = 5  # one bucket in five (20 %) is held out


def is_holdout(external_id: str) -> bool:
    """A sample is held out by a hash of its external_id, so it stays held out in every version
    and no model is ever scored on a sample an earlier model trained on."""
    digest = hashlib.blake2b(external_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HOLDOUT_BUCKETS == 0
